// The three involution primitives (forward F, transpose T, correlate R; see involution.py) as cache-blocked
// C++ loops for the CPU. One task per (sample, group): the group's kernel H[b, g] (K*K x Ho x Wo) stays in
// L2 while its C/G channel planes stream through L1; the innermost loop runs along an image row, contiguous
// for stride 1, so the compiler vectorises it.
//
// Storage types T: float32, float64 and bfloat16. The accumulation type A is T for float32/float64 and float32
// for bfloat16: bf16 values are widened to float32 in the staging copies a task makes anyway (the padded plane,
// the padded-width rows, the kernel block it reuses for its C/G channels), every sum runs in float32, and each
// result is rounded to bf16 once, where it is stored (round to nearest even, as Tensor.to(torch.bfloat16)). So a
// bf16 call gives bit for bit what the float32 kernels give on float32 copies of its inputs, rounded to bf16
// (tests/test_involution_bf16.py), without those copies. With ``wide`` a bf16 call returns the float32 sums unrounded
// (output type O = A), for the gradients that autograd must add in float32 before rounding (involution.py). For
// float32/float64 the staging helpers below hand back the tensor's own memory and the loops are the ones these
// kernels ran before bf16 was added.
#include <torch/extension.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/bit_cast.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

template <typename T>
using acc_t = at::opmath_type<T>;  // float for BFloat16, T itself for float and double

struct Geo {
  int64_t B, C, G, H, W, Ho, Wo, K, s, d, p;
};

// x_like: (B, C, ., .); kernel_like: (B, G, K*K, Ho, Wo); the input planes are H x W.
Geo geometry(const at::Tensor& x_like, at::IntArrayRef kernel_like, int64_t K, int64_t s, int64_t d, int64_t H,
             int64_t W) {
  Geo g;
  g.B = x_like.size(0);
  g.C = x_like.size(1);
  g.G = kernel_like[1];
  g.Ho = kernel_like[3];
  g.Wo = kernel_like[4];
  g.H = H;
  g.W = W;
  g.K = K;
  g.s = s;
  g.d = d;
  g.p = d * (K - 1) / 2;
  return g;
}

// Offset of kernel tap k = (u, v) in a padded plane whose rows hold Wp values.
inline int64_t tap_offset(const Geo& g, int64_t k, int64_t Wp) { return (k / g.K) * g.d * Wp + (k % g.K) * g.d; }

// Copy n values, converting between storage and accumulation types. float32/float64: std::copy. bf16 -> float32
// is exact; float32 -> bf16 rounds to nearest even, as c10::BFloat16(float) and Tensor.to(torch.bfloat16) do
// (NaN -> 0x7FC0 as c10's; ATen's vectorised copy writes another NaN). Both are integer arithmetic on the bits,
// so that the loops vectorise.
template <typename S, typename D>
inline void convert(const S* src, D* dst, int64_t n) {
  std::copy(src, src + n, dst);
}

inline void convert(const c10::BFloat16* src, float* dst, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = c10::bit_cast<float>(uint32_t(src[i].x) << 16);
}

inline void convert(const float* src, c10::BFloat16* dst, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = c10::bit_cast<uint32_t>(src[i]);
    const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
    dst[i].x = nan ? uint16_t(0x7FC0) : uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
}

// The n values at src as accumulation-type values A: src itself when it already holds A (float32/float64),
// else a widened copy in buf (bf16 -> float32, exact).
template <typename A, typename T>
inline const A* widened(const T* src, int64_t n, std::vector<A>& buf) {
  if constexpr (std::is_same_v<A, T>) {
    return src;
  } else {
    buf.resize(n);
    convert(src, buf.data(), n);
    return buf.data();
  }
}

// Where a task accumulates the n results it stores at dst: dst itself when dst holds A, else buf, which
// `store` then rounds into dst once.
template <typename A, typename O>
inline A* accumulator(O* dst, int64_t n, std::vector<A>& buf) {
  if constexpr (std::is_same_v<A, O>) {
    return dst;
  } else {
    buf.resize(n);
    return buf.data();
  }
}

template <typename A, typename O>
inline void store(const A* acc, O* dst, int64_t n) {
  if constexpr (!std::is_same_v<A, O>) convert(acc, dst, n);
}

// Copy the (H, W) interior of a padded (H + 2p, W + 2p) plane out to dst (rounding to dst's type).
template <typename A, typename T>
inline void copy_interior(const A* padded, T* dst, const Geo& g, int64_t Wp) {
  for (int64_t i = 0; i < g.H; ++i) {
    const A* src = padded + (i + g.p) * Wp + g.p;
    convert(src, dst + i * g.W, g.W);
  }
}

// Copy one (H, W) plane into the interior of a zeroed (H + 2p, W + 2p) buffer (widening to the buffer's type).
template <typename T, typename A>
inline void pad_plane(const T* src, A* dst, const Geo& g, int64_t Wp) {
  for (int64_t i = 0; i < g.H; ++i) convert(src + i * g.W, dst + (i + g.p) * Wp + g.p, g.W);
}

// Stride 1, the two adjoints: every product runs on the padded-width grid (rows of Wp = W + 2p values), so
// each kernel tap is ONE flat loop over Ho*Wp values instead of Ho short rows of Wo; the kernel and the
// gradient are copied to that grid with zeros in the 2p extra columns, which makes those columns inert.
// Measured (B64 C64 32x32 G4, 2 threads, AVX2): T 2.4x and R 1.5x faster than row by row at K=3. The
// forward pass stays row by row (its output row's sums stay in registers over the K*K taps), which measured faster.
template <typename T, typename A>
inline void to_padded_width(const T* src, A* dst, int64_t rows, int64_t W, int64_t Wp) {
  for (int64_t i = 0; i < rows; ++i) {
    convert(src + i * W, dst + i * Wp, W);
    std::fill(dst + i * Wp + W, dst + (i + 1) * Wp, A(0));
  }
}

template <typename A>
inline void axpy_flat(A* __restrict acc, const A* __restrict a, const A* __restrict b, int64_t n) {
#pragma omp simd
  for (int64_t q = 0; q < n; ++q) acc[q] += a[q] * b[q];
}

template <typename T, typename O>
void transpose_s1(const T* grad, const T* ker, O* gx, const Geo& g) {
  using A = acc_t<T>;
  const int64_t cg = g.C / g.G, plane_in = g.H * g.W, plane_out = g.Ho * g.Wo, KK = g.K * g.K;
  const int64_t Hp = g.H + 2 * g.p, Wp = g.W + 2 * g.p, n = g.Ho * Wp;
  at::parallel_for(0, g.B * g.G, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> acc(Hp * Wp + Wp), hpw(KK * n), gpw(n);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / g.G, grp = t % g.G;
      for (int64_t k = 0; k < KK; ++k)
        to_padded_width(ker + (t * KK + k) * plane_out, hpw.data() + k * n, g.Ho, g.Wo, Wp);
      for (int64_t c = grp * cg; c < (grp + 1) * cg; ++c) {
        to_padded_width(grad + (b * g.C + c) * plane_out, gpw.data(), g.Ho, g.Wo, Wp);
        std::fill(acc.begin(), acc.end(), A(0));
        for (int64_t k = 0; k < KK; ++k)
          axpy_flat(acc.data() + tap_offset(g, k, Wp), gpw.data(), hpw.data() + k * n, n);
        copy_interior(acc.data(), gx + (b * g.C + c) * plane_in, g, Wp);
      }
    }
  });
}

template <typename T, typename O>
void correlate_s1(const T* grad, const T* x, O* gk, const Geo& g) {
  using A = acc_t<T>;
  const int64_t cg = g.C / g.G, plane_in = g.H * g.W, plane_out = g.Ho * g.Wo, KK = g.K * g.K;
  const int64_t Hp = g.H + 2 * g.p, Wp = g.W + 2 * g.p, n = g.Ho * Wp;
  at::parallel_for(0, g.B * g.G, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> xpad(Hp * Wp + Wp, A(0)), hpw(KK * n), gpw(n);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / g.G, grp = t % g.G;
      std::fill(hpw.begin(), hpw.end(), A(0));
      for (int64_t c = grp * cg; c < (grp + 1) * cg; ++c) {
        pad_plane(x + (b * g.C + c) * plane_in, xpad.data(), g, Wp);
        to_padded_width(grad + (b * g.C + c) * plane_out, gpw.data(), g.Ho, g.Wo, Wp);
        for (int64_t k = 0; k < KK; ++k)
          axpy_flat(hpw.data() + k * n, gpw.data(), xpad.data() + tap_offset(g, k, Wp), n);
      }
      O* hk = gk + t * KK * plane_out;
      for (int64_t k = 0; k < KK; ++k)
        for (int64_t i = 0; i < g.Ho; ++i)
          convert(hpw.data() + k * n + i * Wp, hk + k * plane_out + i * g.Wo, g.Wo);
    }
  });
}

// The forward pass sums an output row in chunks of kLanes values (one 512-bit register of float32, two of
// float64), held in a GCC/Clang vector so that the sums stay in registers over the K*K taps instead of going
// through memory once per tap. Each value is the same sum in the same tap order as before, so float32/float64
// outputs are bit-identical to the earlier row loop; measured (B64 C32 G4 K3, 1 thread, AVX-512) 2.2x faster at
// 16x16 and 1.4x at 32x32 for float32, and it is what makes the bf16 forward pass fast (a float32 row buffer
// rounded per row ran 1.9x slower than float32 at 16x16).
constexpr int64_t kLanes = 16;
template <typename A>
struct LanesOf;
template <>
struct LanesOf<float> {
  typedef float type __attribute__((vector_size(kLanes * sizeof(float))));
};
template <>
struct LanesOf<double> {
  typedef double type __attribute__((vector_size(kLanes * sizeof(double))));
};
template <typename A>
using Lanes = typename LanesOf<A>::type;
static_assert(sizeof(Lanes<float>) == kLanes * sizeof(float), "vector_size");

// out[j] = sum over the taps k, in order, of hr[k * tap_stride + j] * xr[offsets[k] + j*s], for the kLanes j.
template <typename A, typename O>
inline void sum_taps(const A* hr, int64_t tap_stride, const A* xr, const int64_t* offsets, O* out, const Geo& g) {
  Lanes<A> sum = {}, h, x;
  for (int64_t k = 0; k < g.K * g.K; ++k) {
    std::memcpy(&h, hr + k * tap_stride, sizeof(h));
    if (g.s == 1) {
      std::memcpy(&x, xr + offsets[k], sizeof(x));
    } else {
      A strided[kLanes];
      for (int64_t j = 0; j < kLanes; ++j) strided[j] = xr[offsets[k] + j * g.s];
      std::memcpy(&x, strided, sizeof(x));
    }
    sum += h * x;
  }
  A lanes[kLanes];
  std::memcpy(lanes, &sum, sizeof(lanes));
  convert(lanes, out, kLanes);  // rounds to bf16 once
}

// The same for the last n < kLanes values of a row.
template <typename A, typename O>
inline void sum_taps_tail(const A* hr, int64_t tap_stride, const A* xr, const int64_t* offsets, O* out, int64_t n,
                          const Geo& g) {
  A sum[kLanes] = {};
  for (int64_t k = 0; k < g.K * g.K; ++k)
    for (int64_t j = 0; j < n; ++j) sum[j] += hr[k * tap_stride + j] * xr[offsets[k] + j * g.s];
  convert(sum, out, n);
}

// y[b, c, i, j] = sum_k H[b, g, k, i, j] * xpad[b, c, i*s + u*d, j*s + v*d]   (eq. 2)
template <typename T, typename O>
void forward_impl(const T* x, const T* ker, O* y, const Geo& g) {
  using A = acc_t<T>;
  const int64_t cg = g.C / g.G, plane_in = g.H * g.W, plane_out = g.Ho * g.Wo, KK = g.K * g.K;
  const int64_t Hp = g.H + 2 * g.p, Wp = g.W + 2 * g.p;
  std::vector<int64_t> offsets(KK);
  for (int64_t k = 0; k < KK; ++k) offsets[k] = tap_offset(g, k, Wp);
  at::parallel_for(0, g.B * g.G, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> buf(Hp * Wp, A(0)), kbuf;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / g.G, grp = t % g.G;
      const A* hk = widened(ker + t * KK * plane_out, KK * plane_out, kbuf);
      for (int64_t c = grp * cg; c < (grp + 1) * cg; ++c) {
        pad_plane(x + (b * g.C + c) * plane_in, buf.data(), g, Wp);
        O* yc = y + (b * g.C + c) * plane_out;
        for (int64_t i = 0; i < g.Ho; ++i) {
          for (int64_t j0 = 0; j0 < g.Wo; j0 += kLanes) {
            const A* hr = hk + i * g.Wo + j0;
            const A* xr = buf.data() + i * g.s * Wp + j0 * g.s;
            O* out = yc + i * g.Wo + j0;
            if (j0 + kLanes <= g.Wo)
              sum_taps(hr, plane_out, xr, offsets.data(), out, g);
            else
              sum_taps_tail(hr, plane_out, xr, offsets.data(), out, g.Wo - j0, g);
          }
        }
      }
    }
  });
}

// gx = interior of gxpad, gxpad[b, c, i*s + u*d, j*s + v*d] += G[b, c, i, j] * H[b, g, k, i, j]   (adjoint in x;
// stride 1 goes to transpose_s1, so the loop below is the strided one)
template <typename T, typename O>
void transpose_impl(const T* grad, const T* ker, O* gx, const Geo& g) {
  if (g.s == 1) return transpose_s1(grad, ker, gx, g);
  using A = acc_t<T>;
  const int64_t cg = g.C / g.G, plane_in = g.H * g.W, plane_out = g.Ho * g.Wo, KK = g.K * g.K;
  const int64_t Hp = g.H + 2 * g.p, Wp = g.W + 2 * g.p;
  at::parallel_for(0, g.B * g.G, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> acc(Hp * Wp), kbuf, gbuf;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / g.G, grp = t % g.G;
      const A* hk = widened(ker + t * KK * plane_out, KK * plane_out, kbuf);
      for (int64_t c = grp * cg; c < (grp + 1) * cg; ++c) {
        const A* gc = widened(grad + (b * g.C + c) * plane_out, plane_out, gbuf);
        std::fill(acc.begin(), acc.end(), A(0));
        for (int64_t i = 0; i < g.Ho; ++i) {
          const A* __restrict gr = gc + i * g.Wo;
          for (int64_t k = 0; k < KK; ++k) {
            const A* __restrict hr = hk + k * plane_out + i * g.Wo;
            A* __restrict ar = acc.data() + i * g.s * Wp + tap_offset(g, k, Wp);
            for (int64_t j = 0; j < g.Wo; ++j) ar[j * g.s] += gr[j] * hr[j];
          }
        }
        copy_interior(acc.data(), gx + (b * g.C + c) * plane_in, g, Wp);
      }
    }
  });
}

// gH[b, g, k, i, j] = sum_{c in g} G[b, c, i, j] * xpad[b, c, i*s + u*d, j*s + v*d]   (adjoint in H;
// stride 1 goes to correlate_s1)
template <typename T, typename O>
void correlate_impl(const T* grad, const T* x, O* gk, const Geo& g) {
  if (g.s == 1) return correlate_s1(grad, x, gk, g);
  using A = acc_t<T>;
  const int64_t cg = g.C / g.G, plane_in = g.H * g.W, plane_out = g.Ho * g.Wo, KK = g.K * g.K;
  const int64_t Hp = g.H + 2 * g.p, Wp = g.W + 2 * g.p;
  at::parallel_for(0, g.B * g.G, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> buf(Hp * Wp, A(0)), hbuf, gbuf;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / g.G, grp = t % g.G;
      O* out = gk + t * KK * plane_out;
      A* hk = accumulator(out, KK * plane_out, hbuf);
      std::fill(hk, hk + KK * plane_out, A(0));
      for (int64_t c = grp * cg; c < (grp + 1) * cg; ++c) {
        pad_plane(x + (b * g.C + c) * plane_in, buf.data(), g, Wp);
        const A* gc = widened(grad + (b * g.C + c) * plane_out, plane_out, gbuf);
        for (int64_t i = 0; i < g.Ho; ++i) {
          const A* __restrict gr = gc + i * g.Wo;
          for (int64_t k = 0; k < KK; ++k) {
            A* __restrict hr = hk + k * plane_out + i * g.Wo;
            const A* __restrict xr = buf.data() + i * g.s * Wp + tap_offset(g, k, Wp);
            for (int64_t j = 0; j < g.Wo; ++j) hr[j] += gr[j] * xr[j * g.s];
          }
        }
      }
      store(hk, out, KK * plane_out);
    }
  });
}

void check(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu(), "native involution: CPU tensors only");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "native involution: dtypes differ");
  TORCH_CHECK(a.is_contiguous() && b.is_contiguous(), "native involution: contiguous tensors only");
}

template <typename T>
struct Type {
  using type = T;
};

// A new (shape) tensor of like's type, or of its accumulation type when `wide`; run(Type<T>, Type<O>, out) fills
// it, T = like's storage type and O = out's.
template <typename Run>
at::Tensor dispatch(const at::Tensor& like, at::IntArrayRef shape, bool wide, Run&& run) {
  const auto in = like.scalar_type();
  auto out = at::empty(shape, like.options().dtype(wide ? at::toOpMathType(in) : in));
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, in, "native involution", [&] {
    if (out.scalar_type() == in)
      run(Type<scalar_t>{}, Type<scalar_t>{}, out);
    else
      run(Type<scalar_t>{}, Type<acc_t<scalar_t>>{}, out);
  });
  return out;
}

}  // namespace

// wide: for bf16 inputs, the float32 sums unrounded (a float32 tensor); no effect for float32/float64.
at::Tensor forward(const at::Tensor& x, const at::Tensor& kernel, int64_t K, int64_t s, int64_t d, bool wide) {
  check(x, kernel);
  Geo g = geometry(x, kernel.sizes(), K, s, d, x.size(2), x.size(3));
  return dispatch(x, {g.B, g.C, g.Ho, g.Wo}, wide, [&](auto t, auto o, at::Tensor& y) {
    using T = typename decltype(t)::type;
    using O = typename decltype(o)::type;
    forward_impl<T, O>(x.data_ptr<T>(), kernel.data_ptr<T>(), y.data_ptr<O>(), g);
  });
}

at::Tensor transpose(const at::Tensor& grad, const at::Tensor& kernel, int64_t K, int64_t s, int64_t d,
                     int64_t H, int64_t W, bool wide) {
  check(grad, kernel);
  Geo g = geometry(grad, kernel.sizes(), K, s, d, H, W);
  return dispatch(grad, {g.B, g.C, H, W}, wide, [&](auto t, auto o, at::Tensor& gx) {
    using T = typename decltype(t)::type;
    using O = typename decltype(o)::type;
    transpose_impl<T, O>(grad.data_ptr<T>(), kernel.data_ptr<T>(), gx.data_ptr<O>(), g);
  });
}

at::Tensor correlate(const at::Tensor& grad, const at::Tensor& x, int64_t K, int64_t s, int64_t d, int64_t G,
                     bool wide) {
  check(grad, x);
  const std::vector<int64_t> shape = {x.size(0), G, K * K, grad.size(2), grad.size(3)};
  Geo g = geometry(x, shape, K, s, d, x.size(2), x.size(3));
  return dispatch(x, shape, wide, [&](auto t, auto o, at::Tensor& gk) {
    using T = typename decltype(t)::type;
    using O = typename decltype(o)::type;
    correlate_impl<T, O>(grad.data_ptr<T>(), x.data_ptr<T>(), gk.data_ptr<O>(), g);
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "F(x, kernel, K, stride, dilation, wide=False) -> (B, C, Ho, Wo)", py::arg("x"),
        py::arg("kernel"), py::arg("K"), py::arg("stride"), py::arg("dilation"), py::arg("wide") = false);
  m.def("transpose", &transpose, "T(grad, kernel, K, stride, dilation, H, W, wide=False) -> (B, C, H, W)",
        py::arg("grad"), py::arg("kernel"), py::arg("K"), py::arg("stride"), py::arg("dilation"), py::arg("H"),
        py::arg("W"), py::arg("wide") = false);
  m.def("correlate", &correlate, "R(grad, x, K, stride, dilation, G, wide=False) -> (B, G, K*K, Ho, Wo)",
        py::arg("grad"), py::arg("x"), py::arg("K"), py::arg("stride"), py::arg("dilation"), py::arg("G"),
        py::arg("wide") = false);
}
