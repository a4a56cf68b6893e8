// gelu(x + bias) over x [..., H], bias [H]; exact (erf) or tanh-approximated. The backward fuses the
// bias gradient (the sum of grad_x over rows) into the same pass.
#include <cmath>

#include "common.h"

namespace megabio {
namespace {

template <typename V>
V gelu(V v, bool tanh_approx) {
  using A = typename V::value_type;
  if (tanh_approx) {
    const V k(static_cast<A>(M_2_SQRTPI * M_SQRT1_2)), c(static_cast<A>(0.044715));
    return V(A(0.5)) * v * (V(A(1)) + (k * (v + c * v * v * v)).tanh());
  }
  return V(A(0.5)) * v * (V(A(1)) + (v * V(static_cast<A>(M_SQRT1_2))).erf());
}

template <typename V>
V gelu_derivative(V v, bool tanh_approx) {
  using A = typename V::value_type;
  const V half(A(0.5)), one(A(1));
  if (tanh_approx) {
    const V k(static_cast<A>(M_2_SQRTPI * M_SQRT1_2)), c(static_cast<A>(0.044715));
    const V t = (k * (v + c * v * v * v)).tanh();
    return half * (one + t) + half * v * (one - t * t) * k * (one + V(A(3)) * c * v * v);
  }
  const V cdf = half * (one + (v * V(static_cast<A>(M_SQRT1_2))).erf());
  const V pdf = (V(A(-0.5)) * v * v).exp() * V(static_cast<A>(M_2_SQRTPI * M_SQRT1_2 * 0.5));
  return cdf + v * pdf;
}

void check_inputs(const at::Tensor& x, const at::Tensor& bias) {
  check_cpu_floating(x, "x");
  check_channel_vector(x, bias, "bias");
}

at::Tensor bias_gelu_forward(const at::Tensor& x, const at::Tensor& bias, bool tanh_approx) {
  check_inputs(x, bias);
  auto xc = x.contiguous();
  auto out = at::empty_like(xc);
  const int64_t width = x.size(-1), rows = width ? x.numel() / width : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bias_gelu_forward", [&] {
    using A = acc_t<scalar_t>;
    using V = AccVec<scalar_t>;
    const auto b = to_acc_vector<scalar_t>(bias);
    const scalar_t* in = xc.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    ThreadBuffers<A> buffers(2, width);
    at::parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
      A* in_buf = buffers.get(0);
      A* out_buf = buffers.get(1);
      for (int64_t row = begin; row < end; ++row) {
        const A* xr = load_row(in + row * width, in_buf, width);
        A* yr = output_row(o + row * width, out_buf);
        if (tanh_approx) {
          at::vec::map2([](V v, V bv) { return gelu(v + bv, true); }, yr, xr, b.data(), width);
        } else {
          at::vec::map2([](V v, V bv) { return gelu(v + bv, false); }, yr, xr, b.data(), width);
        }
        store_row(yr, o + row * width, width);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward(const at::Tensor& grad, const at::Tensor& x,
                                                      const at::Tensor& bias, bool tanh_approx) {
  check_inputs(x, bias);
  check_same_dtype(grad, x, "grad", "x");
  TORCH_CHECK(grad.sizes() == x.sizes(), "grad ", grad.sizes(), " and x ", x.sizes(), " differ");
  auto xc = x.contiguous(), gc = grad.contiguous();
  auto dx = at::empty_like(xc);
  const int64_t width = x.size(-1), rows = width ? x.numel() / width : 0;
  at::Tensor dbias;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bias_gelu_backward", [&] {
    using A = acc_t<scalar_t>;
    using V = AccVec<scalar_t>;
    const auto b = to_acc_vector<scalar_t>(bias);
    const scalar_t* in = xc.data_ptr<scalar_t>();
    const scalar_t* g = gc.data_ptr<scalar_t>();
    scalar_t* o = dx.data_ptr<scalar_t>();
    ThreadBuffers<A> buffers(3, width);
    ThreadPartials<A> partial_dbias(width);
    at::parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
      A* x_buf = buffers.get(0);
      A* g_buf = buffers.get(1);
      A* out_buf = buffers.get(2);
      A* db = partial_dbias.get();
      for (int64_t row = begin; row < end; ++row) {
        const A* xr = load_row(in + row * width, x_buf, width);
        const A* gr = load_row(g + row * width, g_buf, width);
        A* dxr = output_row(o + row * width, out_buf);
        if (tanh_approx) {
          at::vec::map3([](V gv, V v, V bv) { return gv * gelu_derivative(v + bv, true); }, dxr, gr, xr, b.data(),
                        width);
        } else {
          at::vec::map3([](V gv, V v, V bv) { return gv * gelu_derivative(v + bv, false); }, dxr, gr, xr, b.data(),
                        width);
        }
        at::vec::map2([](V acc, V d) { return acc + d; }, db, db, dxr, width);
        store_row(dxr, o + row * width, width);
      }
    });
    dbias = partial_dbias.reduce(x.scalar_type());
  });
  return {dx, dbias};
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CPU, m) {
  m.impl("bias_gelu_forward", &bias_gelu_forward);
  m.impl("bias_gelu_backward", &bias_gelu_backward);
}

}  // namespace megabio
