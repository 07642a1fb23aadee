// Windows: Hann, Hamming and rectangular, periodic and symmetric, against the formula.

#include "test_helpers.h"

#include <algorithm>
#include <cmath>

#include "edgetag/window.h"

namespace edgetag_test {

using edgetag::MakeWindow;
using edgetag::WindowKind;

void TestWindows() {
  const double tol = 1e-15;
  // Periodic Hann, N = 8: D = 8.
  {
    const auto w = MakeWindow(WindowKind::kHann, 8, true);
    CHECK(w.size() == 8u);
    CHECK(std::abs(w[0] - 0.0) <= tol);
    CHECK(std::abs(w[2] - 0.5) <= tol);
    CHECK(std::abs(w[4] - 1.0) <= tol);
    CHECK(std::abs(w[6] - 0.5) <= tol);
    CHECK(std::abs(w[1] - (0.5 - 0.5 * std::cos(2 * kPi / 8))) <= tol);
    CHECK(std::abs(w[1] - w[7]) <= tol);  // DFT-even: w[n] == w[N - n]
  }
  // Symmetric Hann, N = 9: D = 8, both ends zero, peak in the middle.
  {
    const auto w = MakeWindow(WindowKind::kHann, 9, false);
    CHECK(w.size() == 9u);
    CHECK(std::abs(w[0]) <= tol);
    CHECK(std::abs(w[8]) <= tol);
    CHECK(std::abs(w[4] - 1.0) <= tol);
    CHECK(std::abs(w[2] - 0.5) <= tol);
    for (int i = 0; i < 9; ++i) CHECK(std::abs(w[i] - w[8 - i]) <= tol);
  }
  // Periodic Hamming, N = 8.
  {
    const auto w = MakeWindow(WindowKind::kHamming, 8, true);
    CHECK(std::abs(w[0] - 0.08) <= tol);
    CHECK(std::abs(w[2] - 0.54) <= tol);
    CHECK(std::abs(w[4] - 1.0) <= tol);
    CHECK(std::abs(w[3] - (0.54 - 0.46 * std::cos(2 * kPi * 3 / 8))) <= tol);
  }
  // Symmetric Hamming, N = 5: D = 4.
  {
    const auto w = MakeWindow(WindowKind::kHamming, 5, false);
    CHECK(std::abs(w[0] - 0.08) <= tol);
    CHECK(std::abs(w[1] - 0.54) <= tol);
    CHECK(std::abs(w[2] - 1.0) <= tol);
    CHECK(std::abs(w[3] - 0.54) <= tol);
    CHECK(std::abs(w[4] - 0.08) <= tol);
  }
  // Full formula check for typical lengths.
  for (int length : {2, 3, 400, 512, 2048}) {
    for (bool periodic : {true, false}) {
      for (WindowKind kind : {WindowKind::kHann, WindowKind::kHamming, WindowKind::kRectangular}) {
        const auto w = MakeWindow(kind, length, periodic);
        CHECK(static_cast<int>(w.size()) == length);
        const double a = kind == WindowKind::kHann ? 0.5 : 0.54;
        const double b = kind == WindowKind::kHann ? 0.5 : 0.46;
        const double d = periodic ? length : length - 1;
        double max_err = 0.0;
        for (int i = 0; i < length; ++i) {
          const double expect = kind == WindowKind::kRectangular ? 1.0 : a - b * std::cos(2 * kPi * i / d);
          max_err = std::max(max_err, std::abs(w[i] - expect));
        }
        CHECK_MSG(max_err <= 1e-14, "length " << length << " periodic " << periodic << " kind "
                                              << static_cast<int>(kind) << " max error " << max_err);
      }
    }
  }
  // Periodic window of N == first N points of the symmetric window of N + 1.
  {
    const auto p = MakeWindow(WindowKind::kHann, 400, true);
    const auto s = MakeWindow(WindowKind::kHann, 401, false);
    double max_err = 0.0;
    for (int i = 0; i < 400; ++i) max_err = std::max(max_err, std::abs(p[i] - s[i]));
    CHECK(max_err <= 1e-15);
  }
}

}  // namespace edgetag_test
