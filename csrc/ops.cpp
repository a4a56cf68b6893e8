// Schemas of megabio's fused operators. Each op is registered once here; csrc/cpu/*.cpp and
// csrc/cuda/*.cu add the CPU and CUDA implementations under the same name, so Python calls
// torch.ops.megabio.<op> and the dispatcher picks the device.
#include <torch/extension.h>

TORCH_LIBRARY(megabio, m) {
  m.def("scaled_masked_softmax_forward(Tensor x, Tensor? mask, float scale) -> Tensor");
  m.def("scaled_masked_softmax_backward(Tensor grad, Tensor probs, float scale) -> Tensor");
  m.def("bias_gelu_forward(Tensor x, Tensor bias, bool tanh) -> Tensor");
  m.def("bias_gelu_backward(Tensor grad, Tensor x, Tensor bias, bool tanh) -> (Tensor, Tensor)");
  // Training without recomputation: the forward also returns gelu'(x + bias), which the backward multiplies
  // by grad (and sums into the bias gradient).
  m.def("bias_gelu_forward_with_derivative(Tensor x, Tensor bias, bool tanh) -> (Tensor, Tensor)");
  m.def("bias_gelu_backward_from_derivative(Tensor grad, Tensor derivative) -> (Tensor, Tensor)");
  m.def("layer_norm_forward(Tensor x, Tensor weight, Tensor bias, float eps) -> (Tensor, Tensor, Tensor)");
  m.def(
      "layer_norm_backward(Tensor grad, Tensor x, Tensor mean, Tensor rstd, Tensor weight)"
      " -> (Tensor, Tensor, Tensor)");
  // residual + dropout(x + bias); without a residual (and bias), plain dropout.
  m.def("bias_dropout_add_forward(Tensor x, Tensor? bias, Tensor? residual, float p) -> (Tensor, Tensor)");
  // dx = grad * mask / (1 - p), and with bias_grad the bias gradient (dx summed over rows) in the same pass.
  m.def("bias_dropout_add_backward(Tensor grad, Tensor mask, float p, bool bias_grad) -> (Tensor, Tensor)");
  // Per row of logits [rows, v] (a vocabulary shard): the maximum, sum(exp(logit - maximum)) and the logit at
  // target (a column, or -1 for none: 0), in float (double for double logits).
  m.def("softmax_cross_entropy_statistics(Tensor logits, Tensor target) -> (Tensor, Tensor, Tensor)");
  // (exp(logit - log_sum_exp) - one_hot(target)) * grad_loss per row, in logits' dtype; 0 where grad_loss is 0.
  m.def(
      "softmax_cross_entropy_backward(Tensor logits, Tensor log_sum_exp, Tensor target, Tensor grad_loss)"
      " -> Tensor");
}

// The SIMD level the CPU kernels were compiled for (setup.py: MEGABIO_CPU_CAPABILITY) and whether this
// CPU has it; Python refuses the kernels, rather than crash, on a CPU that lacks it.
#if defined(CPU_CAPABILITY_AVX512)
#if defined(__AVX512BF16__)
constexpr const char* kCpuCapability = "avx512_bf16";
#else
constexpr const char* kCpuCapability = "avx512";
#endif
bool cpu_supported() {
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("fma");
#if defined(__AVX512BF16__)
  return avx512 && __builtin_cpu_supports("avx512bf16");
#else
  return avx512;
#endif
}
#elif defined(CPU_CAPABILITY_AVX2)
constexpr const char* kCpuCapability = "avx2";
bool cpu_supported() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#else
constexpr const char* kCpuCapability = "default";
bool cpu_supported() { return true; }
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "megabio fused kernels (operators live in torch.ops.megabio)";
  m.attr("cpu_capability") = kCpuCapability;
  m.def("cpu_supported", &cpu_supported, "whether this CPU has the SIMD level the kernels were built for");
#ifdef MEGABIO_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
