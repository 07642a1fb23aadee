// Analysis windows.
#pragma once

#include <vector>

#include "edgetag/frontend_config.h"

namespace edgetag {

// w[n] = a - b cos(2 pi n / D), D = N (periodic) or N - 1 (symmetric);
// hann: a = b = 0.5; hamming: a = 0.54, b = 0.46; rectangular: 1.
std::vector<double> MakeWindow(WindowKind kind, int length, bool periodic);

}  // namespace edgetag
