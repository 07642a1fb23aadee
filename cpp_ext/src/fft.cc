#include "edgetag/fft.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace edgetag {

namespace {
constexpr double kPi = 3.14159265358979323846;

bool IsPowerOfTwo(int n) { return n > 0 && (n & (n - 1)) == 0; }
}  // namespace

RealFft::RealFft(int n) : n_(n), half_(n / 2) {
  if (n < 4 || !IsPowerOfTwo(n)) {
    throw std::invalid_argument("FFT size must be a power of two >= 4, got " + std::to_string(n));
  }
  int bits = 0;
  while ((1 << bits) < half_) ++bits;
  bitrev_.resize(half_);
  for (int i = 0; i < half_; ++i) {
    int r = 0;
    for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
    bitrev_[i] = r;
  }
  // Stages with half-size h >= 4 use tables; h = 1 and 2 have trivial twiddles.
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

void RealFft::Transform() {
  double* __restrict re = work_re_.data();
  double* __restrict im = work_im_.data();
  const int m = half_;
  for (int i = 0; i < m; i += 2) {  // h = 1
    const double ar = re[i], ai = im[i], br = re[i + 1], bi = im[i + 1];
    re[i] = ar + br;
    im[i] = ai + bi;
    re[i + 1] = ar - br;
    im[i + 1] = ai - bi;
  }
  if (m >= 4) {
    for (int i = 0; i < m; i += 4) {  // h = 2: twiddles 1 and -i
      double ar = re[i], ai = im[i], br = re[i + 2], bi = im[i + 2];
      re[i] = ar + br;
      im[i] = ai + bi;
      re[i + 2] = ar - br;
      im[i + 2] = ai - bi;
      ar = re[i + 1];
      ai = im[i + 1];
      const double tr = im[i + 3], ti = -re[i + 3];
      re[i + 1] = ar + tr;
      im[i + 1] = ai + ti;
      re[i + 3] = ar - tr;
      im[i + 3] = ai - ti;
    }
  }
  std::size_t offset = 0;
  for (int h = 4; h < m; h *= 2) {
    const double* __restrict wr = twiddle_re_.data() + offset;
    const double* __restrict wi = twiddle_im_.data() + offset;
    for (int base = 0; base < m; base += 2 * h) {
      double* __restrict ar = re + base;
      double* __restrict ai = im + base;
      double* __restrict br = re + base + h;
      double* __restrict bi = im + base + h;
      for (int j = 0; j < h; ++j) {
        const double tr = wr[j] * br[j] - wi[j] * bi[j];
        const double ti = wr[j] * bi[j] + wi[j] * br[j];
        br[j] = ar[j] - tr;
        bi[j] = ai[j] - ti;
        ar[j] += tr;
        ai[j] += ti;
      }
    }
    offset += static_cast<std::size_t>(h);
  }
}

// Packs x as z[m] = x[2m] + i x[2m+1] (in bit-reversed order) and transforms.
#define EDGETAG_PACK_AND_TRANSFORM(x)                 \
  for (int m = 0; m < half_; ++m) {                   \
    work_re_[bitrev_[m]] = (x)[2 * m];                \
    work_im_[bitrev_[m]] = (x)[2 * m + 1];            \
  }                                                   \
  Transform();

void RealFft::Forward(const double* x, double* re, double* im) {
  EDGETAG_PACK_AND_TRANSFORM(x)
  const double* zr = work_re_.data();
  const double* zi = work_im_.data();
  re[0] = zr[0] + zi[0];
  im[0] = 0.0;
  re[half_] = zr[0] - zi[0];
  im[half_] = 0.0;
  for (int k = 1; k < half_; ++k) {
    const int c = half_ - k;
    const double even_r = 0.5 * (zr[k] + zr[c]), even_i = 0.5 * (zi[k] - zi[c]);
    const double odd_r = 0.5 * (zi[k] + zi[c]), odd_i = -0.5 * (zr[k] - zr[c]);
    re[k] = even_r + unpack_re_[k] * odd_r - unpack_im_[k] * odd_i;
    im[k] = even_i + unpack_re_[k] * odd_i + unpack_im_[k] * odd_r;
  }
}

void RealFft::PowerSpectrum(const double* x, double* out) {
  EDGETAG_PACK_AND_TRANSFORM(x)
  const double* __restrict zr = work_re_.data();
  const double* __restrict zi = work_im_.data();
  const double dc = zr[0] + zi[0], nyquist = zr[0] - zi[0];
  out[0] = dc * dc;
  out[half_] = nyquist * nyquist;
  for (int k = 1; k < half_; ++k) {
    const int c = half_ - k;
    const double even_r = 0.5 * (zr[k] + zr[c]), even_i = 0.5 * (zi[k] - zi[c]);
    const double odd_r = 0.5 * (zi[k] + zi[c]), odd_i = -0.5 * (zr[k] - zr[c]);
    const double xr = even_r + unpack_re_[k] * odd_r - unpack_im_[k] * odd_i;
    const double xi = even_i + unpack_re_[k] * odd_i + unpack_im_[k] * odd_r;
    out[k] = xr * xr + xi * xi;
  }
}

#undef EDGETAG_PACK_AND_TRANSFORM

}  // namespace edgetag
