// LayerNorm over the last dim of x [..., H]: two-pass mean / variance per row in float (double for
// double input), returning mean and rstd for the backward. The backward computes dx per row and
// accumulates dgamma / dbeta in per-thread partial sums.
#include <cmath>

#include "common.h"

namespace megabio {
namespace {

void check_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  check_cpu_floating(x, "x");
  check_channel_vector(x, weight, "weight");
  check_channel_vector(x, bias, "bias");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_forward(const at::Tensor& x, const at::Tensor& weight,
                                                                  const at::Tensor& bias, double eps) {
  check_inputs(x, weight, bias);
  auto xc = x.contiguous();
  auto y = at::empty_like(xc);
  const int64_t width = x.size(-1), rows = width ? x.numel() / width : 0;
  const auto stat_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto mean = at::empty({rows}, x.options().dtype(stat_type));
  auto rstd = at::empty({rows}, x.options().dtype(stat_type));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "layer_norm_forward", [&] {
    using A = acc_t<scalar_t>;
    using V = AccVec<scalar_t>;
    const auto weight_acc = to_acc_vector<scalar_t>(weight), bias_acc = to_acc_vector<scalar_t>(bias);
    const A* w = weight_acc.data();
    const A* b = bias_acc.data();
    const scalar_t* in = xc.data_ptr<scalar_t>();
    scalar_t* out = y.data_ptr<scalar_t>();
    A* mean_data = mean.data_ptr<A>();
    A* rstd_data = rstd.data_ptr<A>();
    ThreadBuffers<A> buffers(1, width);
    at::parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
      A* in_buf = buffers.get(0);
      for (int64_t row = begin; row < end; ++row) {
        const A* xr = load_row(in + row * width, in_buf, width);  // staged for the two statistics passes
        const A mu = sum_map<A>([](V v) { return v; }, width, xr) / width;
        const A var = sum_map<A>([mu](V v) { return (v - V(mu)) * (v - V(mu)); }, width, xr) / width;
        const A r = A(1) / std::sqrt(var + static_cast<A>(eps));
        map_row([mu, r, w, b](int64_t i, V v) MEGABIO_INLINE_LAMBDA {
          return (v - V(mu)) * V(r) * V::loadu(w + i) + V::loadu(b + i);
        }, out + row * width, width, in + row * width);
        mean_data[row] = mu;
        rstd_data[row] = r;
      }
    });
  });
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_backward(const at::Tensor& grad, const at::Tensor& x,
                                                                   const at::Tensor& mean, const at::Tensor& rstd,
                                                                   const at::Tensor& weight) {
  check_cpu_floating(x, "x");
  check_same_dtype(grad, x, "grad", "x");
  check_same_dtype(weight, x, "weight", "x");
  TORCH_CHECK(grad.sizes() == x.sizes(), "grad ", grad.sizes(), " and x ", x.sizes(), " differ");
  auto xc = x.contiguous(), gc = grad.contiguous();
  auto dx = at::empty_like(xc);
  const int64_t width = x.size(-1), rows = width ? x.numel() / width : 0;
  TORCH_CHECK(mean.numel() == rows && rstd.numel() == rows, "mean and rstd must hold one value per row (", rows, ")");
  at::Tensor dweight, dbias;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "layer_norm_backward", [&] {
    using A = acc_t<scalar_t>;
    using V = AccVec<scalar_t>;
    const auto w = to_acc_vector<scalar_t>(weight);
    const scalar_t* in = xc.data_ptr<scalar_t>();
    const scalar_t* g = gc.data_ptr<scalar_t>();
    scalar_t* out = dx.data_ptr<scalar_t>();
    auto mean_c = mean.contiguous(), rstd_c = rstd.contiguous();
    const A* mean_data = mean_c.data_ptr<A>();
    const A* rstd_data = rstd_c.data_ptr<A>();
    ThreadBuffers<A> buffers(3, width);
    ThreadPartials<A> partial_dw(width), partial_db(width);
    constexpr int64_t k = V::size();
    at::parallel_for(0, rows, row_grain(width), [&](int64_t begin, int64_t end) {
      A* x_buf = buffers.get(0);
      A* g_buf = buffers.get(1);
      A* out_buf = buffers.get(2);
      A* dw = partial_dw.get();
      A* db = partial_db.get();
      for (int64_t row = begin; row < end; ++row) {
        const V mu(mean_data[row]), r(rstd_data[row]);
        const A* xr = load_row(in + row * width, x_buf, width);
        const A* gr = load_row(g + row * width, g_buf, width);
        // Pass 1: c1 = mean(w dy xhat), c2 = mean(w dy), and this thread's dgamma / dbeta sums.
        V c1_acc(0), c2_acc(0);
        for (int64_t j = 0; j < width; j += k) {
          const int64_t n = std::min(k, width - j);
          const V xhat = (V::loadu(xr + j, n) - mu) * r, gv = V::loadu(gr + j, n);
          const V wdy = V::loadu(w.data() + j, n) * gv;
          c1_acc = c1_acc + wdy * xhat;
          c2_acc = c2_acc + wdy;
          (V::loadu(dw + j, n) + gv * xhat).store(dw + j, n);
          (V::loadu(db + j, n) + gv).store(db + j, n);
        }
        const auto sum = [](V a, V b) { return a + b; };
        const V c1(at::vec::vec_reduce_all<A>(sum, c1_acc) / width), c2(at::vec::vec_reduce_all<A>(sum, c2_acc) / width);
        // Pass 2: dx = rstd * (w dy - c2 - xhat c1).
        A* dxr = output_row(out + row * width, out_buf);
        for (int64_t j = 0; j < width; j += k) {
          const int64_t n = std::min(k, width - j);
          const V xhat = (V::loadu(xr + j, n) - mu) * r;
          const V wdy = V::loadu(w.data() + j, n) * V::loadu(gr + j, n);
          (r * (wdy - c2 - xhat * c1)).store(dxr + j, n);
        }
        store_row(dxr, out + row * width, width);
      }
    });
    dweight = partial_dw.reduce(x.scalar_type());
    dbias = partial_db.reduce(x.scalar_type());
  });
  return {dx, dweight, dbias};
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CPU, m) {
  m.impl("layer_norm_forward", &layer_norm_forward);
  m.impl("layer_norm_backward", &layer_norm_backward);
}

}  // namespace megabio
