// RealFft: against a naive DFT, bad sizes, and the power spectrum.

#include "test_helpers.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "edgetag/fft.h"

namespace edgetag_test {

using edgetag::RealFft;

void TestFftMatchesNaiveDft() {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int n = 4; n <= 4096; n *= 2) {
    RealFft fft(n);
    CHECK(fft.size() == n);
    CHECK(fft.num_bins() == n / 2 + 1);
    for (int trial = 0; trial < 3; ++trial) {
      std::vector<double> x(static_cast<std::size_t>(n));
      for (double& v : x) v = u(rng);
      if (trial == 2) {  // large DC + Nyquist components
        for (int i = 0; i < n; ++i) x[i] += 3.0 + ((i & 1) ? -2.0 : 2.0);
      }
      std::vector<double> ref_re, ref_im;
      NaiveDft(x, ref_re, ref_im);
      std::vector<double> re(fft.num_bins(), NAN), im(fft.num_bins(), NAN);
      const std::vector<double> x_copy = x;
      fft.Forward(x.data(), re.data(), im.data());
      CHECK_MSG(x == x_copy, "Forward modified its input, n=" << n);
      double err2 = 0.0, norm2 = 0.0;
      for (int k = 0; k < fft.num_bins(); ++k) {
        const double dr = re[k] - ref_re[k], di = im[k] - ref_im[k];
        err2 += dr * dr + di * di;
        norm2 += ref_re[k] * ref_re[k] + ref_im[k] * ref_im[k];
      }
      const double rel = std::sqrt(err2 / norm2);
      CHECK_MSG(rel <= 1e-12, "n=" << n << " trial=" << trial << " relative error " << rel);
      CHECK_MSG(im[0] == 0.0 && im[n / 2] == 0.0, "n=" << n << " DC/Nyquist imaginary parts not zero");

      // A second call on the same object gives the same result (no stale state).
      std::vector<double> re2(fft.num_bins()), im2(fft.num_bins());
      fft.Forward(x.data(), re2.data(), im2.data());
      CHECK_MSG(re2 == re && im2 == im, "n=" << n << " repeated Forward differs");
    }
  }
}

void TestFftRejectsBadSizes() {
  for (int n : {0, 3, 6, 100, 400, 1, 2, -4, -8, 12, 4095, 4097}) {
    CHECK_THROWS(std::invalid_argument, RealFft(n));
  }
  for (int n : {4, 8, 16, 1024, 1 << 16}) {
    bool ok = true;
    try {
      RealFft fft(n);
    } catch (...) {
      ok = false;
    }
    CHECK_MSG(ok, "RealFft(" << n << ") threw");
  }
}

void TestPowerSpectrumMatchesForward() {
  std::mt19937 rng(99);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int n = 4; n <= 4096; n *= 2) {
    RealFft fft(n);
    std::vector<double> x(static_cast<std::size_t>(n));
    for (double& v : x) v = u(rng) + 0.25;
    std::vector<double> re(fft.num_bins()), im(fft.num_bins()), power(fft.num_bins(), NAN);
    fft.Forward(x.data(), re.data(), im.data());
    fft.PowerSpectrum(x.data(), power.data());
    double max_p = 0.0;
    for (int k = 0; k < fft.num_bins(); ++k) max_p = std::max(max_p, re[k] * re[k] + im[k] * im[k]);
    for (int k = 0; k < fft.num_bins(); ++k) {
      const double expect = re[k] * re[k] + im[k] * im[k];
      // Same arithmetic; allow for FMA contraction on targets that have it.
      CHECK_MSG(std::abs(power[k] - expect) <= 1e-13 * max_p,
                "n=" << n << " k=" << k << " power " << power[k] << " vs " << expect);
    }
  }
}

}  // namespace edgetag_test
