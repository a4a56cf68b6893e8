// LayerNorm over the last dim: one block per row, two-pass float statistics (mean, then variance
// of the centred row). Backward: dx per row; dgamma / dbeta as per-chunk column sums, then summed.
#include "common.cuh"

namespace megabio {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowChunks = 64;  // row chunks for the dgamma / dbeta partial sums

template <typename T>
__global__ void layer_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ weight,
                                          const T* __restrict__ bias, T* __restrict__ y, float* __restrict__ mean,
                                          float* __restrict__ rstd, int64_t width, float eps) {
  __shared__ float shared[kWarpSize];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * width;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) sum += to_float(xr[j]);
  const float mu = block_sum(sum, shared) / width;
  float sq = 0.0f;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
    const float d = to_float(xr[j]) - mu;
    sq += d * d;
  }
  const float r = rsqrtf(block_sum(sq, shared) / width + eps);
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
    y[row * width + j] = from_float<T>((to_float(xr[j]) - mu) * r * to_float(weight[j]) + to_float(bias[j]));
  }
  if (threadIdx.x == 0) {
    mean[row] = mu;
    rstd[row] = r;
  }
}

template <typename T>
__global__ void layer_norm_backward_dx_kernel(const T* __restrict__ grad, const T* __restrict__ x,
                                              const float* __restrict__ mean, const float* __restrict__ rstd,
                                              const T* __restrict__ weight, T* __restrict__ dx, int64_t width) {
  __shared__ float shared[kWarpSize];
  const int64_t row = blockIdx.x;
  const float mu = mean[row], r = rstd[row];
  const T* xr = x + row * width;
  const T* gr = grad + row * width;
  float c1 = 0.0f, c2 = 0.0f;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
    const float wdy = to_float(weight[j]) * to_float(gr[j]);
    c1 += wdy * (to_float(xr[j]) - mu) * r;
    c2 += wdy;
  }
  c1 = block_sum(c1, shared) / width;
  c2 = block_sum(c2, shared) / width;
  for (int64_t j = threadIdx.x; j < width; j += blockDim.x) {
    const float wdy = to_float(weight[j]) * to_float(gr[j]);
    const float xhat = (to_float(xr[j]) - mu) * r;
    dx[row * width + j] = from_float<T>(r * (wdy - c2 - xhat * c1));
  }
}

template <typename T>
__global__ void layer_norm_backward_params_kernel(const T* __restrict__ grad, const T* __restrict__ x,
                                                  const float* __restrict__ mean, const float* __restrict__ rstd,
                                                  float* __restrict__ dweight_partial,
                                                  float* __restrict__ dbias_partial, int64_t rows, int64_t width) {
  const int64_t col = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (col >= width) return;
  const int64_t per_chunk = (rows + gridDim.y - 1) / gridDim.y;
  const int64_t begin = blockIdx.y * per_chunk, end = min(rows, begin + per_chunk);
  float dw = 0.0f, db = 0.0f;
  for (int64_t row = begin; row < end; ++row) {
    const float g = to_float(grad[row * width + col]);
    dw += g * (to_float(x[row * width + col]) - mean[row]) * rstd[row];
    db += g;
  }
  dweight_partial[blockIdx.y * width + col] = dw;
  dbias_partial[blockIdx.y * width + col] = db;
}

void check_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  check_cuda_floating(x, "x");
  check_channel_vector(x, weight, "weight");
  check_channel_vector(x, bias, "bias");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_forward(const at::Tensor& x, const at::Tensor& weight,
                                                                  const at::Tensor& bias, double eps) {
  check_inputs(x, weight, bias);
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
  auto y = at::empty_like(xc);
  const int64_t width = x.size(-1), rows = width ? xc.numel() / width : 0;
  auto mean = at::empty({rows}, x.options().dtype(at::kFloat));
  auto rstd = at::empty({rows}, x.options().dtype(at::kFloat));
  if (rows == 0) return {y, mean, rstd};
  MEGABIO_DISPATCH_CUDA_TYPES(x.scalar_type(), "layer_norm_forward_cuda", [&] {
    layer_norm_forward_kernel<scalar_t><<<rows, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        xc.data_ptr<scalar_t>(), wc.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
        mean.data_ptr<float>(), rstd.data_ptr<float>(), width, static_cast<float>(eps));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm_backward(const at::Tensor& grad, const at::Tensor& x,
                                                                   const at::Tensor& mean, const at::Tensor& rstd,
                                                                   const at::Tensor& weight) {
  check_cuda_floating(x, "x");
  check_same_dtype(grad, x, "grad", "x");
  check_same_dtype(weight, x, "weight", "x");
  TORCH_CHECK(grad.sizes() == x.sizes(), "grad ", grad.sizes(), " and x ", x.sizes(), " differ");
  TORCH_CHECK(mean.scalar_type() == at::kFloat && rstd.scalar_type() == at::kFloat, "mean and rstd must be float32");
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), gc = grad.contiguous(), wc = weight.contiguous();
  auto mc = mean.contiguous(), rc = rstd.contiguous();
  const int64_t width = x.size(-1), rows = width ? xc.numel() / width : 0;
  TORCH_CHECK(mean.numel() == rows && rstd.numel() == rows, "mean and rstd must hold one value per row (", rows, ")");
  auto dx = at::empty_like(xc);
  auto dweight_partial = at::zeros({kRowChunks, width}, x.options().dtype(at::kFloat));
  auto dbias_partial = at::zeros({kRowChunks, width}, x.options().dtype(at::kFloat));
  if (rows > 0) {
    auto stream = at::cuda::getCurrentCUDAStream();
    MEGABIO_DISPATCH_CUDA_TYPES(x.scalar_type(), "layer_norm_backward_cuda", [&] {
      layer_norm_backward_dx_kernel<scalar_t><<<rows, kThreads, 0, stream>>>(
          gc.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), mc.data_ptr<float>(), rc.data_ptr<float>(),
          wc.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), width);
      const dim3 grid((width + kThreads - 1) / kThreads, kRowChunks);
      layer_norm_backward_params_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
          gc.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), mc.data_ptr<float>(), rc.data_ptr<float>(),
          dweight_partial.data_ptr<float>(), dbias_partial.data_ptr<float>(), rows, width);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {dx, dweight_partial.sum(0).to(x.scalar_type()), dbias_partial.sum(0).to(x.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CUDA, m) {
  m.impl("layer_norm_forward", &layer_norm_forward);
  m.impl("layer_norm_backward", &layer_norm_backward);
}

}  // namespace cuda
}  // namespace megabio
