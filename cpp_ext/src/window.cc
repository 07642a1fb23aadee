#include "edgetag/window.h"

#include <cmath>

namespace edgetag {

std::vector<double> MakeWindow(WindowKind kind, int length, bool periodic) {
  std::vector<double> w(static_cast<std::size_t>(length), 1.0);
  if (kind == WindowKind::kRectangular) return w;
  const double a = kind == WindowKind::kHann ? 0.5 : 0.54;
  const double b = kind == WindowKind::kHann ? 0.5 : 0.46;
  const double denom = periodic ? length : length - 1;
  constexpr double kTwoPi = 6.28318530717958647692;
  for (int n = 0; n < length; ++n) w[n] = a - b * std::cos(kTwoPi * n / denom);
  return w;
}

}  // namespace edgetag
