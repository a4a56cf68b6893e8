// softmax(scale * x) over the last dim of x [b, h, sq, sk], masked keys excluded (mask: bool,
// True = masked, broadcastable to x). Rows with every key masked give zeros. One pass per row over
// a float copy (double for double input), statistics in float for half-precision input.
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
  ThreadBuffers<A> buffers(1, sk);
  constexpr A neg_inf = -std::numeric_limits<A>::infinity();

  at::parallel_for(0, rows, row_grain(sk), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      A* buf = buffers.get(0);
      const A* xr = load_row(x_data + row * sk, buf, sk);
      const A s = scale;
      at::vec::map([s](V v) { return v * V(s); }, buf, xr, sk);
      if (has_mask) {
        const int64_t q = row % sq, h = (row / sq) % heads, b = row / (sq * heads);
        const bool* m = mask_data + b * ms[0] + h * ms[1] + q * ms[2];
        for (int64_t j = 0; j < sk; ++j) {
          if (m[j * ms[3]]) buf[j] = neg_inf;
        }
      }
      const A max = reduce_map<A>([](V a, V b) { return at::vec::maximum(a, b); }, neg_inf, [](V v) { return v; },
                                  sk, static_cast<const A*>(buf));
      T* o = out_data + row * sk;
      if (max == neg_inf) {  // every key masked
        std::fill(o, o + sk, T(0));
        continue;
      }
      at::vec::map([max](V v) MEGABIO_INLINE_LAMBDA { return fast_exp(v - V(max)); }, buf, buf, sk);
      const A sum = sum_map<A>([](V v) { return v; }, sk, static_cast<const A*>(buf));
      const A inv = A(1) / sum;
      A* yr = output_row(o, buf);
      at::vec::map([inv](V v) { return v * V(inv); }, yr, buf, sk);
      store_row(yr, o, sk);
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
  ThreadBuffers<A> buffers(3, sk);

  at::parallel_for(0, rows, row_grain(sk), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const A* g = load_row(g_data + row * sk, buffers.get(0), sk);
      const A* p = load_row(p_data + row * sk, buffers.get(1), sk);
      A* d = output_row(dx_data + row * sk, buffers.get(2));
      const A dot = sum_map<A>([](V a, V b) { return a * b; }, sk, g, p);
      // dx = scale * p * (g - <g, p>)
      const A s = scale;
      at::vec::map2([dot, s](V gv, V pv) { return V(s) * pv * (gv - V(dot)); }, d, g, p, sk);
      store_row(d, dx_data + row * sk, sk);
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
