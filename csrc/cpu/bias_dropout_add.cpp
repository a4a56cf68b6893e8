// residual + dropout(x + bias), or dropout(x) alone (attention probabilities). Training draws its
// keep-mask from Philox (philox.h) keyed by one 64-bit draw from torch's default CPU generator, so the
// result depends only on that generator's state (not on the thread count) and megabio's RNG tracker
// controls it by swapping the default state. The mask is returned for the backward.
#include <ATen/CPUGeneratorImpl.h>

#include <mutex>

#include "common.h"
#include "philox.h"

namespace megabio {
namespace {

uint64_t draw_seed() {
  auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(std::nullopt, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return gen->random64();
}

// Per-element multipliers of a chunk: `scale` where the mask keeps, 0 where it drops.
// Arithmetic rather than a select on each bool, so that the compiler vectorizes it.
template <typename A>
C10_ALWAYS_INLINE void keep_to_scale(const bool* keep, A scale, A* out, int64_t n) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(keep);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<A>(bytes[i]) * scale;
}

// Runs body(chunk, first, last, multipliers) over chunks of kPhiloxChunk elements in parallel, with a
// per-chunk scratch of kPhiloxChunk multipliers (zero-padded, so vector loads may run past `last`).
template <typename A, typename Body>
void for_each_chunk(int64_t n, Body body) {
  const int64_t chunks = (n + kPhiloxChunk - 1) / kPhiloxChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    alignas(64) A multipliers[kPhiloxChunk + kParamPadding] = {};  // loads past a chunk's end read zeros
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t first = chunk * kPhiloxChunk;
      body(chunk, first, std::min(n, first + kPhiloxChunk), multipliers);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> bias_dropout_add_forward(const at::Tensor& x,
                                                            const std::optional<at::Tensor>& bias_opt,
                                                            const std::optional<at::Tensor>& residual_opt,
                                                            double p) {
  check_cpu_floating(x, "x");
  const bool has_residual = residual_opt.has_value() && residual_opt->defined();
  if (has_residual) {
    check_same_dtype(x, *residual_opt, "x", "residual");
    TORCH_CHECK(x.sizes() == residual_opt->sizes(), "x ", x.sizes(), " and residual ", residual_opt->sizes(),
                " differ");
  }
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout probability p=", p, " must be in [0, 1)");
  const bool has_bias = bias_opt.has_value() && bias_opt->defined();
  const int64_t width = x.dim() ? x.size(-1) : 1;
  if (has_bias) {
    check_same_dtype(x, *bias_opt, "x", "bias");
    TORCH_CHECK(bias_opt->dim() == 1 && bias_opt->size(0) == width, "bias must be [", width, "], got ",
                bias_opt->sizes());
  }
  auto xc = x.contiguous();
  auto rc = has_residual ? residual_opt->contiguous() : at::Tensor();
  auto out = at::empty_like(xc);
  const bool training = p > 0.0;
  auto mask = training ? at::empty(xc.sizes(), xc.options().dtype(at::kBool)) : at::empty({0}, xc.options().dtype(at::kBool));
  const int64_t n = xc.numel();
  const uint64_t seed = training ? draw_seed() : 0;
  // Keep when a 16-bit uniform draw is >= p * 2^16: probability 1 - p to within 2^-17.
  const auto threshold = static_cast<uint32_t>(std::lround(p * 65536.0));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "bias_dropout_add_forward", [&] {
    using A = acc_t<scalar_t>;
    using V = AccVec<scalar_t>;
    // The bias (zeros without one), padded so that a vector load at any column stays inside.
    std::vector<A> b(width + kParamPadding, A(0));
    if (has_bias) at::vec::convert(bias_opt->contiguous().data_ptr<scalar_t>(), b.data(), width);
    const scalar_t* in = xc.data_ptr<scalar_t>();
    const scalar_t* res = has_residual ? rc.data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.data_ptr<scalar_t>();
    bool* m = training ? mask.data_ptr<bool>() : nullptr;
    const A keep_scale = A(1) / (A(1) - static_cast<A>(p));
    for_each_chunk<A>(n, [&](int64_t chunk, int64_t first, int64_t last, A* multipliers) {
      if (training) {
        philox_keep_mask(seed, static_cast<uint64_t>(chunk), threshold, last - first,
                         reinterpret_cast<uint8_t*>(m + first));
        keep_to_scale(m + first, keep_scale, multipliers, last - first);
      } else {
        std::fill(multipliers, multipliers + (last - first), A(1));
      }
      // Row by row, so that the bias is one contiguous run per segment.
      for (int64_t i = first; i < last;) {
        const int64_t col = i % width, len = std::min(last - i, width - col);
        const A* bias_at = b.data() + col;
        const A* scale_at = multipliers + (i - first);
        const auto branch = [bias_at, scale_at](int64_t j, V xv) MEGABIO_INLINE_LAMBDA {
          return (xv + V::loadu(bias_at + j)) * V::loadu(scale_at + j);
        };
        if (res != nullptr) {
          map_row<scalar_t>([&](int64_t j, V xv, V rv) MEGABIO_INLINE_LAMBDA { return rv + branch(j, xv); },
                            o + i, len, in + i, res + i);
        } else {
          map_row<scalar_t>(branch, o + i, len, in + i);
        }
        i += len;
      }
    });
  });
  return {out, mask};
}

std::tuple<at::Tensor, at::Tensor> bias_dropout_add_backward(const at::Tensor& grad, const at::Tensor& mask,
                                                             double p, bool bias_grad) {
  check_cpu_floating(grad, "grad");
  TORCH_CHECK(mask.scalar_type() == at::kBool && mask.sizes() == grad.sizes(), "mask must be a bool tensor of shape ",
              grad.sizes(), " (from the forward), got ", mask.scalar_type(), " ", mask.sizes());
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout probability p=", p, " must be in [0, 1)");
  TORCH_CHECK(!bias_grad || grad.dim() >= 1, "a bias gradient needs grad of at least one dimension");
  auto gc = grad.contiguous(), mc = mask.contiguous();
  auto dx = at::empty_like(gc);
  const int64_t width = grad.dim() ? grad.size(-1) : 1;
  at::Tensor dbias;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "bias_dropout_add_backward", [&] {
    using A = acc_t<scalar_t>;
    using V = AccVec<scalar_t>;
    const A keep_scale = A(1) / (A(1) - static_cast<A>(p));
    const scalar_t* g = gc.data_ptr<scalar_t>();
    const bool* m = mc.data_ptr<bool>();
    scalar_t* o = dx.data_ptr<scalar_t>();
    // The bias gradient accumulates dx in float, per thread, before it is rounded to the storage type.
    ThreadPartials<A> partial_dbias(bias_grad ? width : 0);
    for_each_chunk<A>(gc.numel(), [&](int64_t, int64_t first, int64_t last, A* multipliers) {
      keep_to_scale(m + first, keep_scale, multipliers, last - first);
      if (!bias_grad) {
        map_row<scalar_t>([&](int64_t j, V gv) MEGABIO_INLINE_LAMBDA { return gv * V::loadu(multipliers + j); },
                          o + first, last - first, g + first);
        return;
      }
      A* db = partial_dbias.get();
      for (int64_t i = first; i < last;) {  // row by row, so that each segment's columns are contiguous
        const int64_t col = i % width, len = std::min(last - i, width - col);
        A* db_at = db + col;
        const A* scale_at = multipliers + (i - first);
        // Past the segment's end map_row loads zeros, so the padding lanes of db_at add zeros.
        map_row<scalar_t>([db_at, scale_at](int64_t j, V gv) MEGABIO_INLINE_LAMBDA {
          const V d = gv * V::loadu(scale_at + j);
          (V::loadu(db_at + j) + d).store(db_at + j);
          return d;
        }, o + i, len, g + i);
        i += len;
      }
    });
    if (bias_grad) dbias = partial_dbias.reduce(grad.scalar_type());
  });
  return {dx, bias_grad ? dbias : at::empty({0}, grad.options())};
}

}  // namespace

TORCH_LIBRARY_IMPL(megabio, CPU, m) {
  m.impl("bias_dropout_add_forward", &bias_dropout_add_forward);
  m.impl("bias_dropout_add_backward", &bias_dropout_add_backward);
}

}  // namespace megabio
