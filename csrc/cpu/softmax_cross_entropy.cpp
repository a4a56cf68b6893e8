// Softmax cross entropy over the last dim of logits [rows, v] (one tensor-parallel shard of the vocabulary),
// without the float copy, shifted copy and exponential copy of the logits that the eager version makes.
// Statistics: per row the maximum, sum(exp(logit - maximum)) and the logit at the target, in two passes
// (the second reads the row back from cache); the caller combines shards into log-sum-exp. Backward:
// (exp(logit - lse) - one_hot(target)) * grad per row in one pass, half precision widened and narrowed in
// registers; a row whose grad is 0 (an ignored label) is zero-filled without reading its logits.
#include <cmath>
#include <limits>

#include "common.h"

namespace megabio {
namespace {

template <typename T>
void statistics_rows(const at::Tensor& logits, const int64_t* target, acc_t<T>* max_out, acc_t<T>* sum_out,
                     acc_t<T>* target_out) {
  using A = acc_t<T>;
  using V = AccVec<T>;
  constexpr int64_t k = V::size();
  const int64_t rows = logits.size(0), v = logits.size(1);
  const T* z = logits.data_ptr<T>();
  const V neg_inf(-std::numeric_limits<A>::infinity()), zero(A(0));
  at::parallel_for(0, rows, row_grain(v), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* row = z + r * v;
      V max_v = neg_inf;
      for_each_vector(row, v, [&](int64_t, V x, int64_t n) MEGABIO_INLINE_LAMBDA {
        max_v = at::vec::maximum(max_v, n < k ? V::set(neg_inf, x, n) : x);
      });
      const A max = at::vec::vec_reduce_all<A>([](V a, V b) { return at::vec::maximum(a, b); }, max_v);
      const V max_b(max);
      V sum_v = zero;
      for_each_vector(row, v, [&](int64_t, V x, int64_t n) MEGABIO_INLINE_LAMBDA {
        const V e = fast_exp(x - max_b);
        sum_v = sum_v + (n < k ? V::set(zero, e, n) : e);
      });
      max_out[r] = max;
      sum_out[r] = at::vec::vec_reduce_all<A>([](V a, V b) { return a + b; }, sum_v);
      target_out[r] = target[r] >= 0 ? static_cast<A>(row[target[r]]) : A(0);
    }
  });
}

template <typename T>
void gradient_rows(const at::Tensor& logits, const acc_t<T>* log_sum_exp, const int64_t* target,
                   const acc_t<T>* grad_loss, at::Tensor& out) {
  using A = acc_t<T>;
  using V = AccVec<T>;
  const int64_t rows = logits.size(0), v = logits.size(1);
  const T* z = logits.data_ptr<T>();
  T* o = out.data_ptr<T>();
  at::parallel_for(0, rows, row_grain(v), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* out_row = o + r * v;
      const A g = grad_loss[r];
      if (g == A(0)) {
        std::fill(out_row, out_row + v, T(0));
        continue;
      }
      const T* row = z + r * v;
      const V lse(log_sum_exp[r]), g_v(g);
      map_row([lse, g_v](int64_t, V x) MEGABIO_INLINE_LAMBDA { return fast_exp(x - lse) * g_v; }, out_row, v, row);
      if (const int64_t t = target[r]; t >= 0) {
        out_row[t] = static_cast<T>((std::exp(static_cast<A>(row[t]) - log_sum_exp[r]) - A(1)) * g);
      }
    }
  });
}

// A per-row vector of logits [rows, v]: `rows` elements of `dtype` on the CPU.
void check_row_vector(const at::Tensor& t, int64_t rows, at::ScalarType dtype, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == rows, name, " must be [", rows, "] (one per row of logits), got ",
              t.sizes());
}

at::ScalarType statistics_type(const at::Tensor& logits) {
  return logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

void check_logits_and_target(const at::Tensor& logits, const at::Tensor& target) {
  check_cpu_floating(logits, "logits");
  TORCH_CHECK(logits.dim() == 2, "logits must be [rows, vocab], got ", logits.sizes());
  check_row_vector(target, logits.size(0), at::kLong, "target");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> softmax_cross_entropy_statistics(const at::Tensor& logits,
                                                                                const at::Tensor& target) {
  check_logits_and_target(logits, target);
  TORCH_CHECK(logits.size(1) > 0, "logits must have at least one column");
  auto z = logits.contiguous();
  auto t = target.contiguous();
  const auto options = z.options().dtype(statistics_type(z));
  auto max = at::empty({z.size(0)}, options), sum_exp = at::empty_like(max), target_logit = at::empty_like(max);
  const int64_t v = z.size(1);
  TORCH_CHECK(z.size(0) == 0 || (t.min().item<int64_t>() >= -1 && t.max().item<int64_t>() < v),
              "target must be a column of logits (0 .. ", v - 1, ") or -1, got values outside");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, z.scalar_type(), "softmax_cross_entropy_statistics", [&] {
    statistics_rows<scalar_t>(z, t.data_ptr<int64_t>(), max.data_ptr<acc_t<scalar_t>>(),
                              sum_exp.data_ptr<acc_t<scalar_t>>(), target_logit.data_ptr<acc_t<scalar_t>>());
  });
  return {max, sum_exp, target_logit};
}

at::Tensor softmax_cross_entropy_backward(const at::Tensor& logits, const at::Tensor& log_sum_exp,
                                          const at::Tensor& target, const at::Tensor& grad_loss) {
  check_logits_and_target(logits, target);
  const auto stat = statistics_type(logits);
  check_row_vector(log_sum_exp, logits.size(0), stat, "log_sum_exp");
  check_row_vector(grad_loss, logits.size(0), stat, "grad_loss");
  auto z = logits.contiguous();
  auto lse = log_sum_exp.contiguous(), t = target.contiguous(), g = grad_loss.contiguous();
  auto out = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, z.scalar_type(), "softmax_cross_entropy_backward", [&] {
    gradient_rows<scalar_t>(z, lse.data_ptr<acc_t<scalar_t>>(), t.data_ptr<int64_t>(),
                            g.data_ptr<acc_t<scalar_t>>(), out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CPU, m) {
  m.impl("softmax_cross_entropy_statistics", &softmax_cross_entropy_statistics);
  m.impl("softmax_cross_entropy_backward", &softmax_cross_entropy_backward);
}

}  // namespace megabio
