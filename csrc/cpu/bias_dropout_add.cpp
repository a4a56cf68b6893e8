// residual + dropout(x + bias). Training draws its keep-mask from a Philox stream keyed by one 64-bit
// draw from torch's default CPU generator, so the result depends only on that generator's state (not
// on the thread count) and megabio's RNG tracker controls it by swapping the default state. The mask
// is returned for the backward.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/PhiloxRNGEngine.h>

#include <mutex>

#include "common.h"

namespace megabio {
namespace {

constexpr int64_t kChunk = 4096;  // elements per Philox subsequence

uint64_t draw_seed() {
  auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(std::nullopt, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return gen->random64();
}

std::tuple<at::Tensor, at::Tensor> bias_dropout_add_forward(const at::Tensor& x,
                                                            const std::optional<at::Tensor>& bias_opt,
                                                            const at::Tensor& residual, double p) {
  check_cpu_floating(x, "x");
  check_same_dtype(x, residual, "x", "residual");
  TORCH_CHECK(x.sizes() == residual.sizes(), "x ", x.sizes(), " and residual ", residual.sizes(), " differ");
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout probability p=", p, " must be in [0, 1)");
  const bool has_bias = bias_opt.has_value() && bias_opt->defined();
  const int64_t width = x.dim() ? x.size(-1) : 1;
  if (has_bias) {
    check_same_dtype(x, *bias_opt, "x", "bias");
    TORCH_CHECK(bias_opt->dim() == 1 && bias_opt->size(0) == width, "bias must be [", width, "], got ",
                bias_opt->sizes());
  }
  auto xc = x.contiguous(), rc = residual.contiguous();
  auto out = at::empty_like(xc);
  const bool training = p > 0.0;
  auto mask = training ? at::empty(xc.sizes(), xc.options().dtype(at::kBool)) : at::empty({0}, xc.options().dtype(at::kBool));
  const int64_t n = xc.numel();
  const uint64_t seed = training ? draw_seed() : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bias_dropout_add_forward", [&] {
    using A = acc_t<scalar_t>;
    const auto b = has_bias ? to_acc_vector<scalar_t>(*bias_opt) : std::vector<A>();
    const scalar_t* in = xc.data_ptr<scalar_t>();
    const scalar_t* res = rc.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    bool* m = training ? mask.data_ptr<bool>() : nullptr;
    const A keep_scale = training ? A(1) / (A(1) - static_cast<A>(p)) : A(1);
    // A uniform u in [0, 1) from the top 24 bits; keep when u >= p, i.e. with probability 1 - p.
    const uint32_t threshold = static_cast<uint32_t>(p * 16777216.0);
    // Fixed-size chunks, each with its own Philox subsequence: the numbers depend only on the element
    // index, never on how chunks are spread over threads.
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        at::Philox4_32 engine(seed, static_cast<uint64_t>(chunk), 0);
        const int64_t first = chunk * kChunk, last = std::min(n, first + kChunk);
        int64_t col = first % width;  // the bias column, advanced without a division per element
        for (int64_t i = first; i < last; ++i) {
          A v = static_cast<A>(in[i]) + (has_bias ? b[col] : A(0));
          if (++col == width) col = 0;
          if (training) {
            const bool keep = (engine() >> 8) >= threshold;
            m[i] = keep;
            v = keep ? v * keep_scale : A(0);
          }
          o[i] = static_cast<scalar_t>(static_cast<A>(res[i]) + v);
        }
      }
    });
  });
  return {out, mask};
}

at::Tensor bias_dropout_add_backward(const at::Tensor& grad, const at::Tensor& mask, double p) {
  check_cpu_floating(grad, "grad");
  TORCH_CHECK(mask.scalar_type() == at::kBool && mask.sizes() == grad.sizes(), "mask must be a bool tensor of shape ",
              grad.sizes(), " (from the forward), got ", mask.scalar_type(), " ", mask.sizes());
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout probability p=", p, " must be in [0, 1)");
  auto gc = grad.contiguous(), mc = mask.contiguous();
  auto dx = at::empty_like(gc);
  const int64_t n = gc.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "bias_dropout_add_backward", [&] {
    using A = acc_t<scalar_t>;
    const A keep_scale = A(1) / (A(1) - static_cast<A>(p));
    const scalar_t* g = gc.data_ptr<scalar_t>();
    const bool* m = mc.data_ptr<bool>();
    scalar_t* o = dx.data_ptr<scalar_t>();
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        o[i] = static_cast<scalar_t>(m[i] ? static_cast<A>(g[i]) * keep_scale : A(0));
      }
    });
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CPU, m) {
  m.impl("bias_dropout_add_forward", &bias_dropout_add_forward);
  m.impl("bias_dropout_add_backward", &bias_dropout_add_backward);
}

}  // namespace megabio
