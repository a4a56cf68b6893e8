// softmax(scale * x) over the last dim of x [b, h, sq, sk], masked keys excluded (mask: bool,
// True = masked, broadcastable to x). Rows with every key masked give zeros. Three vectorized passes per
// row, through a float row buffer (double for double input) in L1: scale + mask + max from the input,
// exp + sum in the buffer, normalise into the output.
#include <limits>

#include "common.h"

namespace megabio {
namespace {

template <typename T>
void softmax_forward_rows(const at::Tensor& x, const at::Tensor& mask, double scale, at::Tensor& out) {
  const int64_t sk = x.size(3), sq = x.size(2), heads = x.size(1);
  const int64_t rows = x.numel() / sk;
  const T* x_data = x.data_ptr<T>();
  T* out_data = out.data_ptr<T>();
  const bool has_mask = mask.defined();
  const bool* mask_data = has_mask ? mask.data_ptr<bool>() : nullptr;
  const auto ms = has_mask ? mask.strides().vec() : std::vector<int64_t>(4, 0);
  using A = acc_t<T>;
  using V = AccVec<T>;
  constexpr int64_t k = V::size();
  ThreadBuffers<A> buffers(2, sk);
  constexpr A neg_inf = -std::numeric_limits<A>::infinity();
  const V scale_v(static_cast<A>(scale)), zero(A(0)), neg_inf_v(neg_inf);

  at::parallel_for(0, rows, row_grain(sk), [&](int64_t begin, int64_t end) {
    A* buf = buffers.get(0);
    A* masked = buffers.get(1);  // 1 where the key is masked, as arithmetic values (vector-comparable)
    const uint8_t* converted_mask_row = nullptr;
    // The row's (batch, head, query) position, stepped along with it (no divisions per row).
    int64_t q = begin % sq, h = (begin / sq) % heads, b = begin / (sq * heads);
    for (int64_t row = begin; row < end; ++row) {
      if (has_mask) {
        const auto* m = reinterpret_cast<const uint8_t*>(mask_data + b * ms[0] + h * ms[1] + q * ms[2]);
        if (m != converted_mask_row) {  // a broadcast mask repeats its rows: convert each run once
          converted_mask_row = m;
          if (ms[3] == 1) {
            for (int64_t j = 0; j < sk; ++j) masked[j] = static_cast<A>(m[j]);  // vectorized by the compiler
          } else {
            for (int64_t j = 0; j < sk; ++j) masked[j] = static_cast<A>(m[j * ms[3]]);
          }
        }
        if (++q == sq) {
          q = 0;
          if (++h == heads) h = 0, ++b;
        }
      }
      // Pass 1: scale, mask, running maximum, into the float row buffer (half precision widened on the way).
      V max_v = neg_inf_v;
      for_each_vector(x_data + row * sk, sk, [&](int64_t j, V v, int64_t n) MEGABIO_INLINE_LAMBDA {
        v = v * scale_v;
        if (has_mask) v = V::blendv(v, neg_inf_v, V::loadu(masked + j, n) != zero);
        if (n < k) v = V::set(neg_inf_v, v, n);
        max_v = at::vec::maximum(max_v, v);
        v.store(buf + j, n);
      });
      const A max = at::vec::vec_reduce_all<A>([](V a, V b) { return at::vec::maximum(a, b); }, max_v);
      T* o = out_data + row * sk;
      if (max == neg_inf) {  // every key masked
        std::fill(o, o + sk, T(0));
        continue;
      }
      // Pass 2: exponentials and their sum (masked keys give exp(-inf) = 0).
      V sum_v = zero;
      for (int64_t j = 0; j < sk; j += k) {
        const int64_t n = std::min(k, sk - j);
        V e = fast_exp(V::loadu(buf + j, n) - V(max));
        if (n < k) e = V::set(zero, e, n);
        sum_v = sum_v + e;
        e.store(buf + j, n);
      }
      const V inv(A(1) / at::vec::vec_reduce_all<A>([](V a, V b) { return a + b; }, sum_v));
      // Pass 3: normalise into the output (half precision narrowed on the way).
      map_into([inv](V v) MEGABIO_INLINE_LAMBDA { return v * inv; }, o, buf, sk);
    }
  });
}

template <typename T>
void softmax_backward_rows(const at::Tensor& grad, const at::Tensor& probs, double scale, at::Tensor& dx) {
  const int64_t sk = probs.size(-1);
  const int64_t rows = probs.numel() / sk;
  const T* g_data = grad.data_ptr<T>();
  const T* p_data = probs.data_ptr<T>();
  T* dx_data = dx.data_ptr<T>();
  using A = acc_t<T>;
  using V = AccVec<T>;
  const V s(static_cast<A>(scale));

  at::parallel_for(0, rows, row_grain(sk), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const T* g = g_data + row * sk;
      const T* p = p_data + row * sk;
      // dx = scale * p * (g - <g, p>)
      const V dot(dot_row(g, p, sk));
      map_row([s, dot](int64_t, V gv, V pv) MEGABIO_INLINE_LAMBDA { return s * pv * (gv - dot); },
              dx_data + row * sk, sk, g, p);
    }
  });
}

at::Tensor scaled_masked_softmax_forward(const at::Tensor& x, const std::optional<at::Tensor>& mask, double scale) {
  check_cpu_floating(x, "x");
  TORCH_CHECK(x.dim() == 4, "x must be [batch, heads, sq, sk], got ", x.sizes());
  at::Tensor expanded;
  if (mask.has_value() && mask->defined()) {
    TORCH_CHECK(mask->scalar_type() == at::kBool, "mask must be bool (True = masked), got ", mask->scalar_type());
    TORCH_CHECK(mask->device().is_cpu(), "mask must be on the CPU like x");
    TORCH_CHECK(mask->dim() == 4, "mask must have 4 dims broadcastable to x ", x.sizes(), ", got ", mask->sizes());
    expanded = mask->expand(x.sizes());  // strides 0 along broadcast dims
  }
  auto xc = x.contiguous();
  auto out = at::empty_like(xc);
  if (x.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "scaled_masked_softmax_forward", [&] {
    softmax_forward_rows<scalar_t>(xc, expanded, scale, out);
  });
  return out;
}

at::Tensor scaled_masked_softmax_backward(const at::Tensor& grad, const at::Tensor& probs, double scale) {
  check_cpu_floating(probs, "probs");
  check_same_dtype(grad, probs, "grad", "probs");
  TORCH_CHECK(grad.sizes() == probs.sizes(), "grad ", grad.sizes(), " and probs ", probs.sizes(), " differ");
  auto g = grad.contiguous(), p = probs.contiguous();
  auto dx = at::empty_like(p);
  if (p.numel() == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, p.scalar_type(), "scaled_masked_softmax_backward", [&] {
    softmax_backward_rows<scalar_t>(g, p, scale, dx);
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CPU, m) {
  m.impl("scaled_masked_softmax_forward", &scaled_masked_softmax_forward);
  m.impl("scaled_masked_softmax_backward", &scaled_masked_softmax_backward);
}

}  // namespace megabio
