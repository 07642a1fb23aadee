// How periodic a frame of audio is, and at which period: the normalized squared
// difference function (NSDF) of a frame, its maxima and the refined period near
// a guess or of the frame alone. The pitch decoder's signal side
// (edgetag.runtime.periodicity documents the method; this is its arithmetic).
//
// One analyser holds its FFTs and work buffers: calls allocate nothing, and one
// analyser must not be used by two threads at once.
#pragma once

#include <utility>
#include <vector>

#include "edgetag/aligned_vector.h"
#include "edgetag/fft.h"

namespace edgetag {

struct Period {
  double f0_hz = 0.0;    // 0 when no period was found
  double clarity = 0.0;  // NSDF value of the period, 0..1
};

struct PeriodicitySettings {
  int sample_rate = 16000;
  int frame_length = 1024;
  double fmin = 32.0;            // lowest pitch measured (Hz): longest lag
  double fmax = 2000.0;          // highest (Hz): shortest lag a period may have
  double refine_above = 0.0;     // periods with a lower clarity skip the search at multiples
  double key_maximum_ratio = 0.9;  // the key maximum reaches this share of the highest maximum
  double multiple_keep = 0.9;      // a multiple refines the period where its NSDF keeps this share
};

class PeriodicityAnalyser {
 public:
  // Throws std::invalid_argument for frames under 8 samples or fmin/fmax not 0 < fmin < fmax.
  explicit PeriodicityAnalyser(const PeriodicitySettings& settings);

  int frame_length() const { return settings_.frame_length; }
  int tau_min() const { return tau_min_; }
  int tau_max() const { return tau_max_; }

  // NSDF of frame[0..frame_length) at lags 0..tau_max (tau_max + 1 values, in out).
  void Nsdf(const double* frame, double* out);
  // The NSDF maximum within `cents` of near_hz, refined; {0, 0} when there is none.
  Period NearPeriod(const double* frame, double near_hz, double cents);
  // The frame's key maximum, refined; {0, 0} without one or when it is shorter than fmax's lag.
  Period OwnPeriod(const double* frame);
  // Both of the above from one NSDF of the frame: {near, own}.
  std::pair<Period, Period> Periods(const double* frame, double near_hz, double cents);
  // Sum of squares of the last frame the NSDF was computed on (any call above), its mean removed.
  double FrameEnergy() const { return energy_[settings_.frame_length]; }
  // Power (Hann window) at f0_hz over that of the strongest of the first `harmonics` harmonics.
  double FundamentalShare(const double* frame, double f0_hz, int harmonics);

 private:
  void ComputeNsdf(const double* frame);  // into nsdf_, maxima into maxima_
  Period NearFromNsdf(double near_hz, double cents) const;  // on nsdf_ and maxima_
  Period OwnFromNsdf() const;
  Period MultipleRefined(int i) const;
  double Parabola(int i) const;

  PeriodicitySettings settings_;
  int tau_min_, tau_max_, width_, n_fft_, spectrum_fft_;
  RealFft fft_, spectrum_;
  AlignedVector<double> centred_, padded_, whole_re_, whole_im_, head_re_, head_im_, out_re_, out_im_;
  AlignedVector<double> energy_, hann_, power_;
  std::vector<double> nsdf_;
  std::vector<int> maxima_;
};

}  // namespace edgetag
