// gelu(x + bias) over x [..., H], bias [H]; exact (erf) or tanh-approximated. The backward fuses the
// bias gradient (the sum of grad_x over rows) into the same pass. In half precision arithmetic, not memory,
// bounds GeLU on CPU, so training there uses the _with_derivative forward (gelu' from the same exponential,
// saved in place of x) and a backward that only multiplies; float32 recomputes gelu' from x in the backward.
#include <array>
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

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

// gelu(v) and its derivative. Each kernel below uses one of the two or both; inlined, the unused one's
// arithmetic is dead code and compiled away, so one formula serves the forward, the backward and both.
template <typename V>
C10_ALWAYS_INLINE std::pair<V, V> gelu_and_derivative(V v, bool tanh_approx) {
  using A = typename V::value_type;
  const V half(A(0.5)), one(A(1));
  if (tanh_approx) {
    const V k(static_cast<A>(M_2_SQRTPI * M_SQRT1_2)), c(static_cast<A>(0.044715));
    const V t = fast_tanh(k * (v + c * v * v * v));
    return {half * v * (one + t), half * (one + t) + half * v * (one - t * t) * k * (one + V(A(3)) * c * v * v)};
  }
  const auto [cdf, gauss] = normal_cdf_and_gauss(v);
  return {v * cdf, cdf + v * gauss * V(static_cast<A>(M_2_SQRTPI * M_SQRT1_2 * 0.5))};
}

void check_inputs(const at::Tensor& x, const at::Tensor& bias) {
  check_cpu_floating(x, "x");
  check_channel_vector(x, bias, "bias");
}

// gelu(x + bias) into `out`, and with kWithDerivative also gelu'(x + bias) into `derivative`, from the same
// exponential. Template flags keep the choices out of the per-element code.
template <bool kTanh, bool kWithDerivative>
void forward_rows(const at::Tensor& x, const at::Tensor& bias, at::Tensor& out, at::Tensor* derivative) {
  const int64_t width = x.size(-1), rows = width ? x.numel() / width : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bias_gelu_forward", [&] {
    using V = AccVec<scalar_t>;
    const auto bias_acc = to_acc_vector<scalar_t>(bias);
    const auto* b = bias_acc.data();
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    scalar_t* d = kWithDerivative ? derivative->data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t at = row * width;
        auto both = [b](int64_t i, V v) MEGABIO_INLINE_LAMBDA {
          return gelu_and_derivative(v + V::loadu(b + i), kTanh);
        };
        if constexpr (kWithDerivative) {
          map_row_to([&](int64_t i, V v) MEGABIO_INLINE_LAMBDA {
                       const auto [y, dy] = both(i, v);
                       return std::array{y, dy};
                     },
                     std::array{o + at, d + at}, width, in + at);
        } else {
          map_row([&](int64_t i, V v) MEGABIO_INLINE_LAMBDA { return both(i, v).first; }, o + at, width, in + at);
        }
      }
    });
  });
}

at::Tensor bias_gelu_forward(const at::Tensor& x, const at::Tensor& bias, bool tanh_approx) {
  check_inputs(x, bias);
  auto xc = x.contiguous();
  auto out = at::empty_like(xc);
  tanh_approx ? forward_rows<true, false>(xc, bias, out, nullptr) : forward_rows<false, false>(xc, bias, out, nullptr);
  return out;
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_forward_with_derivative(const at::Tensor& x, const at::Tensor& bias,
                                                                     bool tanh_approx) {
  check_inputs(x, bias);
  auto xc = x.contiguous();
  auto out = at::empty_like(xc), derivative = at::empty_like(xc);
  tanh_approx ? forward_rows<true, true>(xc, bias, out, &derivative)
              : forward_rows<false, true>(xc, bias, out, &derivative);
  return {out, derivative};
}

// Where the backward gets gelu'(x + bias): recomputed from x with either formula, or the forward's saved one.
enum class DerivativeFrom { kErf, kTanh, kSaved };

// dx = grad * gelu'(x + bias), with the bias gradient (dx summed over rows, in float before dx is rounded to
// the storage type) in the same pass; `saved` is x, or the derivative itself for kSaved (bias unused).
template <DerivativeFrom kFrom>
std::tuple<at::Tensor, at::Tensor> backward_rows(const at::Tensor& grad, const at::Tensor& saved,
                                                 const at::Tensor& bias) {
  check_same_dtype(grad, saved, "grad", "the saved tensor");
  TORCH_CHECK(grad.sizes() == saved.sizes(), "grad ", grad.sizes(), " and the saved tensor ", saved.sizes(),
              " differ");
  auto sc = saved.contiguous(), gc = grad.contiguous();
  auto dx = at::empty_like(sc);
  const int64_t width = sc.size(-1), rows = width ? sc.numel() / width : 0;
  at::Tensor dbias;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, sc.scalar_type(), "bias_gelu_backward", [&] {
    using A = acc_t<scalar_t>;
    using V = AccVec<scalar_t>;
    const auto bias_acc = kFrom == DerivativeFrom::kSaved ? std::vector<A>() : to_acc_vector<scalar_t>(bias);
    const auto* b = bias_acc.data();
    const scalar_t* s = sc.data_ptr<scalar_t>();
    const scalar_t* g = gc.data_ptr<scalar_t>();
    scalar_t* o = dx.data_ptr<scalar_t>();
    ThreadPartials<A> partial_dbias(width);
    at::parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
      A* db = partial_dbias.get();  // padding lanes add zeros
      auto step = [b, db](int64_t i, V gv, V sv) MEGABIO_INLINE_LAMBDA {
        V derivative = sv;
        if constexpr (kFrom != DerivativeFrom::kSaved) {
          derivative = gelu_and_derivative(sv + V::loadu(b + i), kFrom == DerivativeFrom::kTanh).second;
        }
        const V d = gv * derivative;
        (V::loadu(db + i) + d).store(db + i);
        return d;
      };
      for (int64_t row = begin; row < end; ++row) {
        map_row(step, o + row * width, width, g + row * width, s + row * width);
      }
    });
    dbias = partial_dbias.reduce(sc.scalar_type());
  });
  return {dx, dbias};
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward(const at::Tensor& grad, const at::Tensor& x,
                                                      const at::Tensor& bias, bool tanh_approx) {
  check_inputs(x, bias);
  return tanh_approx ? backward_rows<DerivativeFrom::kTanh>(grad, x, bias)
                     : backward_rows<DerivativeFrom::kErf>(grad, x, bias);
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward_from_derivative(const at::Tensor& grad,
                                                                      const at::Tensor& derivative) {
  check_cpu_floating(derivative, "derivative");
  return backward_rows<DerivativeFrom::kSaved>(grad, derivative, derivative);
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CPU, m) {
  m.impl("bias_gelu_forward", &bias_gelu_forward);
  m.impl("bias_gelu_backward", &bias_gelu_backward);
  m.impl("bias_gelu_forward_with_derivative", &bias_gelu_forward_with_derivative);
  m.impl("bias_gelu_backward_from_derivative", &bias_gelu_backward_from_derivative);
}

}  // namespace megabio
