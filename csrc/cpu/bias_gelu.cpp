// gelu(x + bias) over x [..., H], bias [H]; exact (erf) or tanh-approximated. The backward fuses the
// bias gradient (the sum of grad_x over rows) into the same pass.
#include <cmath>
#include <type_traits>
#include <utility>

#include "common.h"

namespace megabio {
namespace {

// Phi(v) (the normal CDF) and exp(-v^2/2), sharing one exponential: erf by Abramowitz & Stegun 7.1.26
// (|error| < 1.5e-7, the formula of ATen's own Vectorized<float>::erf) with fast_exp. The backward
// needs both, and eager GeLU's backward pays for two exponentials. Double precision keeps Sleef's erf/exp.
// Always inlined: as calls, the 64-byte vectors would travel through the stack.
template <typename V>
C10_ALWAYS_INLINE std::pair<V, V> normal_cdf_and_gauss(V v) {
  using A = typename V::value_type;
  const V half(A(0.5)), one(A(1));
  const V gauss = fast_exp(V(A(-0.5)) * v * v);
  if constexpr (std::is_same_v<A, double>) {
    return {half * (one + (v * V(A(M_SQRT1_2))).erf()), gauss};
  } else {
    const V x = (v * V(A(M_SQRT1_2))).abs();
    const V t = fast_reciprocal(V(A(0.3275911)) * x + one);
    const V poly = ((((V(A(1.061405429)) * t + V(A(-1.453152027))) * t + V(A(1.421413741))) * t +
                     V(A(-0.284496736))) * t + V(A(0.254829592))) * t;
    const V erf_abs = one - poly * gauss;
    const V erf = V::blendv(erf_abs, V(A(0)) - erf_abs, v < V(A(0)));
    return {half * (one + erf), gauss};
  }
}

// tanh(u) = 1 - 2 / (1 + exp(2u)) with fast_exp: a third of Sleef's tanh. Near u = 0 it loses relative
// precision (|error| < 1e-7 absolute), which gelu's factors v and 1 + tanh absorb.
template <typename V>
C10_ALWAYS_INLINE V fast_tanh(V u) {
  using A = typename V::value_type;
  if constexpr (std::is_same_v<A, double>) {
    return u.tanh();
  } else {
    return V(A(1)) - V(A(2)) * fast_reciprocal(V(A(1)) + fast_exp(V(A(2)) * u));
  }
}

template <typename V>
C10_ALWAYS_INLINE V gelu(V v, bool tanh_approx) {
  using A = typename V::value_type;
  if (tanh_approx) {
    const V k(static_cast<A>(M_2_SQRTPI * M_SQRT1_2)), c(static_cast<A>(0.044715));
    return V(A(0.5)) * v * (V(A(1)) + fast_tanh(k * (v + c * v * v * v)));
  }
  return v * normal_cdf_and_gauss(v).first;
}

template <typename V>
C10_ALWAYS_INLINE V gelu_derivative(V v, bool tanh_approx) {
  using A = typename V::value_type;
  const V half(A(0.5)), one(A(1));
  if (tanh_approx) {
    const V k(static_cast<A>(M_2_SQRTPI * M_SQRT1_2)), c(static_cast<A>(0.044715));
    const V t = fast_tanh(k * (v + c * v * v * v));
    return half * (one + t) + half * v * (one - t * t) * k * (one + V(A(3)) * c * v * v);
  }
  const auto [cdf, gauss] = normal_cdf_and_gauss(v);
  return cdf + v * gauss * V(static_cast<A>(M_2_SQRTPI * M_SQRT1_2 * 0.5));
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
    using V = AccVec<scalar_t>;
    const auto bias_acc = to_acc_vector<scalar_t>(bias);
    const auto* b = bias_acc.data();
    const scalar_t* in = xc.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        if (tanh_approx) {
          map_row([b](int64_t i, V v) MEGABIO_INLINE_LAMBDA { return gelu(v + V::loadu(b + i), true); },
                  o + row * width, width, in + row * width);
        } else {
          map_row([b](int64_t i, V v) MEGABIO_INLINE_LAMBDA { return gelu(v + V::loadu(b + i), false); },
                  o + row * width, width, in + row * width);
        }
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
    const auto bias_acc = to_acc_vector<scalar_t>(bias);
    const auto* b = bias_acc.data();
    const scalar_t* in = xc.data_ptr<scalar_t>();
    const scalar_t* g = gc.data_ptr<scalar_t>();
    scalar_t* o = dx.data_ptr<scalar_t>();
    ThreadPartials<A> partial_dbias(width);
    at::parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
      A* db = partial_dbias.get();
      // dbias accumulates dx in float before it is rounded to the storage type (padding lanes add zeros).
      auto step = [b, db](int64_t i, V gv, V v, bool tanh) MEGABIO_INLINE_LAMBDA {
        const V d = gv * gelu_derivative(v + V::loadu(b + i), tanh);
        (V::loadu(db + i) + d).store(db + i);
        return d;
      };
      for (int64_t row = begin; row < end; ++row) {
        if (tanh_approx) {
          map_row([&step](int64_t i, V gv, V v) MEGABIO_INLINE_LAMBDA { return step(i, gv, v, true); },
                  o + row * width, width, g + row * width, in + row * width);
        } else {
          map_row([&step](int64_t i, V gv, V v) MEGABIO_INLINE_LAMBDA { return step(i, gv, v, false); },
                  o + row * width, width, g + row * width, in + row * width);
        }
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
