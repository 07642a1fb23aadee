// Real FFT of a power-of-two size, in double precision.
//
// A length-N real frame is packed into N/2 complex values, transformed with an
// iterative radix-2 FFT (structure-of-arrays layout so the butterflies
// vectorise; the first two stages are fused with the packing and bit reversal)
// and unpacked into the N/2 + 1 non-negative-frequency bins. All
// tables are built in the constructor; Forward() allocates nothing.
#pragma once

#include <cstddef>
#include <vector>

#include "edgetag/aligned_vector.h"

namespace edgetag {

class RealFft {
 public:
  // n: a power of two >= 4; anything else throws std::invalid_argument.
  explicit RealFft(int n);

  int size() const { return n_; }
  int num_bins() const { return n_ / 2 + 1; }

  // Spectrum of the real frame x[0..n). re/im receive num_bins() values each.
  void Forward(const double* x, double* re, double* im);

  // Squared magnitude of the spectrum of x: out[0..num_bins()).
  void PowerSpectrum(const double* x, double* out);

 private:
  void PackAndTransform(const double* x);  // FFT of the even/odd packing of x into work_*

  int n_;      // real length
  int half_;   // complex length n/2
  std::vector<int> block_pos_;         // where the first pass writes each 4-point block
  AlignedVector<double> twiddle_re_;     // per stage h (4, 8, ... half/2): h values, concatenated
  AlignedVector<double> twiddle_im_;
  AlignedVector<double> unpack_re_;      // e^{-2 pi i k / n}, k in [0, half)
  AlignedVector<double> unpack_im_;
  AlignedVector<double> work_re_, work_im_;
};

}  // namespace edgetag
