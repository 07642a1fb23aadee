#include "edgetag/fft.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "edgetag/simd.h"

#if EDGETAG_MULTIVERSION
#include <immintrin.h>
#endif

namespace edgetag {

namespace {
constexpr double kPi = 3.14159265358979323846;

bool IsPowerOfTwo(int n) { return n > 0 && (n & (n - 1)) == 0; }

// One radix-2 pass over a block: a[j], b[j] <- a[j] + w[j] b[j], a[j] - w[j] b[j].
// Separate, non-aliasing arrays let the compiler vectorise over j.
inline void Butterflies(double* __restrict ar, double* __restrict ai, double* __restrict br,
                        double* __restrict bi, const double* __restrict wr, const double* __restrict wi,
                        int h) {
  for (int j = 0; j < h; ++j) {
    const double tr = wr[j] * br[j] - wi[j] * bi[j];
    const double ti = wr[j] * bi[j] + wi[j] * br[j];
    br[j] = ar[j] - tr;
    bi[j] = ai[j] - ti;
    ar[j] += tr;
    ai[j] += ti;
  }
}

// The first two radix-2 stages fused with the even/odd packing z[n] = x[2n] + i x[2n+1]
// and the bit-reversal permutation. In bit-reversed order, the four values
// z[q + k*m/4] (k = 0..3) form the block at block_pos[q] = 4*rev(q), as
// [z[q], z[q+m/2], z[q+m/4], z[q+3m/4]]; the loop reads them in natural order
// and writes each block's 4-point DFT. PackBlocks does q = first .. quarter - 1.
inline void PackBlocks(const double* x, int first, int quarter, const int* block_pos, double* re, double* im) {
  const int stride = 2 * quarter;  // distance in x from z[q] to z[q + m/4]
  for (int q = first; q < quarter; ++q) {
    const double* p = x + 2 * q;
    const double a0r = p[0], a0i = p[1];
    const double a1r = p[stride], a1i = p[stride + 1];
    const double a2r = p[2 * stride], a2i = p[2 * stride + 1];
    const double a3r = p[3 * stride], a3i = p[3 * stride + 1];
    // Stage h = 1: pairs (z[q], z[q+m/2]) and (z[q+m/4], z[q+3m/4]).
    const double b0r = a0r + a2r, b0i = a0i + a2i, b1r = a0r - a2r, b1i = a0i - a2i;
    const double b2r = a1r + a3r, b2i = a1i + a3i, b3r = a1r - a3r, b3i = a1i - a3i;
    // Stage h = 2: twiddles 1 and -i, where -i (x + iy) = y - ix.
    const int o = block_pos[q];
    re[o] = b0r + b2r;
    im[o] = b0i + b2i;
    re[o + 2] = b0r - b2r;
    im[o + 2] = b0i - b2i;
    re[o + 1] = b1r + b3i;
    im[o + 1] = b1i - b3r;
    re[o + 3] = b1r - b3i;
    im[o + 3] = b1i + b3r;
  }
}

#if EDGETAG_MULTIVERSION
// Lane L of c0..c3 (one block's 4 values) to dst + oa, ob, oc, od for L = 0,
// 1, 2, 3: a 4x4 transpose whose last step is left to 128-bit stores.
#define EDGETAG_STORE_BLOCKS(c0, c1, c2, c3, dst, oa, ob, oc, od)                         \
  do {                                                                                   \
    const __m256d t0_ = _mm256_unpacklo_pd(c0, c1), t1_ = _mm256_unpackhi_pd(c0, c1);    \
    const __m256d t2_ = _mm256_unpacklo_pd(c2, c3), t3_ = _mm256_unpackhi_pd(c2, c3);    \
    _mm_storeu_pd((dst) + (oa), _mm256_castpd256_pd128(t0_));                            \
    _mm_storeu_pd((dst) + (oa) + 2, _mm256_castpd256_pd128(t2_));                        \
    _mm_storeu_pd((dst) + (ob), _mm256_castpd256_pd128(t1_));                            \
    _mm_storeu_pd((dst) + (ob) + 2, _mm256_castpd256_pd128(t3_));                        \
    _mm_storeu_pd((dst) + (oc), _mm256_extractf128_pd(t0_, 1));                          \
    _mm_storeu_pd((dst) + (oc) + 2, _mm256_extractf128_pd(t2_, 1));                      \
    _mm_storeu_pd((dst) + (od), _mm256_extractf128_pd(t1_, 1));                          \
    _mm_storeu_pd((dst) + (od) + 2, _mm256_extractf128_pd(t3_, 1));                      \
  } while (0)

// Four q at a time, one per lane: the same additions (exact in any order of
// the work), with de-interleaving loads and transposing stores.
__attribute__((target("arch=x86-64-v3"))) void PackFirstStages(const double* x, int quarter,
                                                               const int* block_pos, double* re, double* im) {
  const int stride = 2 * quarter;
  int q = 0;
  for (; q + 4 <= quarter; q += 4) {
    // Unpacking leaves the lanes holding q, q+2, q+1, q+3.
    __m256d ar[4], ai[4];
    for (int k = 0; k < 4; ++k) {
      const __m256d lo = _mm256_loadu_pd(x + 2 * q + k * stride);
      const __m256d hi = _mm256_loadu_pd(x + 2 * q + k * stride + 4);
      ar[k] = _mm256_unpacklo_pd(lo, hi);
      ai[k] = _mm256_unpackhi_pd(lo, hi);
    }
    const __m256d b0r = _mm256_add_pd(ar[0], ar[2]), b0i = _mm256_add_pd(ai[0], ai[2]);
    const __m256d b1r = _mm256_sub_pd(ar[0], ar[2]), b1i = _mm256_sub_pd(ai[0], ai[2]);
    const __m256d b2r = _mm256_add_pd(ar[1], ar[3]), b2i = _mm256_add_pd(ai[1], ai[3]);
    const __m256d b3r = _mm256_sub_pd(ar[1], ar[3]), b3i = _mm256_sub_pd(ai[1], ai[3]);
    const int oa = block_pos[q], ob = block_pos[q + 2], oc = block_pos[q + 1], od = block_pos[q + 3];
    EDGETAG_STORE_BLOCKS(_mm256_add_pd(b0r, b2r), _mm256_add_pd(b1r, b3i), _mm256_sub_pd(b0r, b2r),
                         _mm256_sub_pd(b1r, b3i), re, oa, ob, oc, od);
    EDGETAG_STORE_BLOCKS(_mm256_add_pd(b0i, b2i), _mm256_sub_pd(b1i, b3r), _mm256_sub_pd(b0i, b2i),
                         _mm256_add_pd(b1i, b3r), im, oa, ob, oc, od);
  }
  PackBlocks(x, q, quarter, block_pos, re, im);
}
#undef EDGETAG_STORE_BLOCKS

__attribute__((target("default"))) void PackFirstStages(const double* x, int quarter, const int* block_pos,
                                                        double* re, double* im) {
  PackBlocks(x, 0, quarter, block_pos, re, im);
}
#else
void PackFirstStages(const double* x, int quarter, const int* block_pos, double* re, double* im) {
  PackBlocks(x, 0, quarter, block_pos, re, im);
}
#endif

// Two radix-2 stages (h and 2h) in one pass over blocks of 4h points: with
// w1 = e^{-i pi j/h} and w2 = e^{-i pi j/(2h)}, for j < h,
//   b0, b1 = a0 +- w1 a1;  b2, b3 = a2 +- w1 a3;
//   c0, c2 = b0 +- w2 b2;  c1, c3 = b1 +- (-i w2) b3.
// Half the loads and stores of two radix-2 passes.
inline void Radix4Butterflies(double* __restrict r0, double* __restrict i0, double* __restrict r1,
                              double* __restrict i1, double* __restrict r2, double* __restrict i2,
                              double* __restrict r3, double* __restrict i3, const double* __restrict w1r,
                              const double* __restrict w1i, const double* __restrict w2r,
                              const double* __restrict w2i, int h) {
  for (int j = 0; j < h; ++j) {
    const double t1r = w1r[j] * r1[j] - w1i[j] * i1[j], t1i = w1r[j] * i1[j] + w1i[j] * r1[j];
    const double t3r = w1r[j] * r3[j] - w1i[j] * i3[j], t3i = w1r[j] * i3[j] + w1i[j] * r3[j];
    const double b0r = r0[j] + t1r, b0i = i0[j] + t1i, b1r = r0[j] - t1r, b1i = i0[j] - t1i;
    const double b2r = r2[j] + t3r, b2i = i2[j] + t3i, b3r = r2[j] - t3r, b3i = i2[j] - t3i;
    const double t2r = w2r[j] * b2r - w2i[j] * b2i, t2i = w2r[j] * b2i + w2i[j] * b2r;
    // -i (w2 b3): multiply by w2, then (x + iy) -> (y - ix).
    const double u_r = w2r[j] * b3r - w2i[j] * b3i, u_i = w2r[j] * b3i + w2i[j] * b3r;
    const double t4r = u_i, t4i = -u_r;
    r0[j] = b0r + t2r;
    i0[j] = b0i + t2i;
    r2[j] = b0r - t2r;
    i2[j] = b0i - t2i;
    r1[j] = b1r + t4r;
    i1[j] = b1i + t4i;
    r3[j] = b1r - t4r;
    i3[j] = b1i - t4i;
  }
}

// The remaining stages h = 4, 8, ..., m/2 of an in-place radix-2 FFT of m >= 8
// points, two at a time, then a last single stage if their number is odd.
// twiddle_re/im hold, stage after stage, the h values e^{-i pi j / h}: stage h
// starts at offset h - 4.
EDGETAG_HOT void LaterStages(double* re, double* im, int m, const double* twiddle_re,
                             const double* twiddle_im) {
  int h = 4;
  for (; 4 * h <= m; h *= 4) {
    const double *w1r = twiddle_re + (h - 4), *w1i = twiddle_im + (h - 4);
    const double *w2r = twiddle_re + (2 * h - 4), *w2i = twiddle_im + (2 * h - 4);
    for (int base = 0; base < m; base += 4 * h) {
      double* r = re + base;
      double* i = im + base;
      Radix4Butterflies(r, i, r + h, i + h, r + 2 * h, i + 2 * h, r + 3 * h, i + 3 * h, w1r, w1i, w2r, w2i, h);
    }
  }
  if (h < m) {
    for (int base = 0; base < m; base += 2 * h) {
      Butterflies(re + base, im + base, re + base + h, im + base + h, twiddle_re + (h - 4),
                  twiddle_im + (h - 4), h);
    }
  }
}

// Spectrum of a real frame from the FFT z of its even/odd packing, for k in [1, half):
// X[k] = E + W^k O, E = (z[k] + conj z[half-k]) / 2, O = -i (z[k] - conj z[half-k]) / 2.
// With power set, out_re receives |X[k]|^2 and out_im is unused.
template <bool kPower>
inline void Unpack(const double* __restrict zr, const double* __restrict zi, const double* __restrict wr,
                   const double* __restrict wi, int half, double* __restrict out_re,
                   double* __restrict out_im) {
  for (int k = 1; k < half; ++k) {
    const int c = half - k;
    const double even_r = 0.5 * (zr[k] + zr[c]), even_i = 0.5 * (zi[k] - zi[c]);
    const double odd_r = 0.5 * (zi[k] + zi[c]), odd_i = -0.5 * (zr[k] - zr[c]);
    const double xr = even_r + wr[k] * odd_r - wi[k] * odd_i;
    const double xi = even_i + wr[k] * odd_i + wi[k] * odd_r;
    if constexpr (kPower) {
      out_re[k] = xr * xr + xi * xi;
    } else {
      out_re[k] = xr;
      out_im[k] = xi;
    }
  }
}

EDGETAG_HOT void UnpackPower(const double* zr, const double* zi, const double* wr, const double* wi,
                             int half, double* out) {
  Unpack<true>(zr, zi, wr, wi, half, out, nullptr);
}
}  // namespace

RealFft::RealFft(int n) : n_(n), half_(n / 2) {
  if (n < 4 || !IsPowerOfTwo(n)) {
    throw std::invalid_argument("FFT size must be a power of two >= 4, got " + std::to_string(n));
  }
  int bits = 0;
  while ((1 << bits) < half_) ++bits;
  // Block q of the first pass lands at 4 * (q bit-reversed over bits - 2 bits).
  for (int q = 0; q < half_ / 4; ++q) {
    int r = 0;
    for (int b = 0; b < bits - 2; ++b) r |= ((q >> b) & 1) << (bits - 3 - b);
    block_pos_.push_back(4 * r);
  }
  for (int h = 4; h < half_; h *= 2) {
    for (int j = 0; j < h; ++j) {
      twiddle_re_.push_back(std::cos(kPi * j / h));
      twiddle_im_.push_back(-std::sin(kPi * j / h));
    }
  }
  unpack_re_.resize(half_);
  unpack_im_.resize(half_);
  for (int k = 0; k < half_; ++k) {
    unpack_re_[k] = std::cos(2.0 * kPi * k / n_);
    unpack_im_[k] = -std::sin(2.0 * kPi * k / n_);
  }
  work_re_.assign(half_, 0.0);
  work_im_.assign(half_, 0.0);
}

void RealFft::PackAndTransform(const double* x) {
  if (half_ == 2) {  // n = 4: one 2-point DFT of z[0] = x0 + i x1, z[1] = x2 + i x3
    work_re_[0] = x[0] + x[2];
    work_im_[0] = x[1] + x[3];
    work_re_[1] = x[0] - x[2];
    work_im_[1] = x[1] - x[3];
    return;
  }
  PackFirstStages(x, half_ / 4, block_pos_.data(), work_re_.data(), work_im_.data());
  LaterStages(work_re_.data(), work_im_.data(), half_, twiddle_re_.data(), twiddle_im_.data());
}

void RealFft::Forward(const double* x, double* re, double* im) {
  PackAndTransform(x);
  const double* zr = work_re_.data();
  const double* zi = work_im_.data();
  re[0] = zr[0] + zi[0];
  im[0] = 0.0;
  re[half_] = zr[0] - zi[0];
  im[half_] = 0.0;
  Unpack<false>(zr, zi, unpack_re_.data(), unpack_im_.data(), half_, re, im);
}

void RealFft::PowerSpectrum(const double* x, double* out) {
  PackAndTransform(x);
  const double* zr = work_re_.data();
  const double* zi = work_im_.data();
  const double dc = zr[0] + zi[0], nyquist = zr[0] - zi[0];
  out[0] = dc * dc;
  out[half_] = nyquist * nyquist;
  UnpackPower(zr, zi, unpack_re_.data(), unpack_im_.data(), half_, out);
}

}  // namespace edgetag
