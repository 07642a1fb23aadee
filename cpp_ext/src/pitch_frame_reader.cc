#include "edgetag/pitch_frame_reader.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <tuple>
#include <string>
#include <utility>

namespace edgetag {

namespace {
PitchFrameReaderSettings Checked(PitchFrameReaderSettings s) {
  if (s.bin_cents.size() < 9) {
    throw std::invalid_argument("a pitch reader needs at least 9 bins, got " + std::to_string(s.bin_cents.size()));
  }
  if (s.harmonics < 1) throw std::invalid_argument("a pitch reader needs harmonics >= 1");
  if (s.hold_frames < 0 || !(s.hold_rise_db >= 0.0 && std::isfinite(s.hold_rise_db)) ||
      !(s.hold_below >= 0.0 && s.hold_below <= 1.0)) {
    throw std::invalid_argument("a pitch reader's hold needs hold_frames >= 0, a finite hold_rise_db >= 0 and "
                                "hold_below in [0, 1]");
  }
  return s;
}

// Whether f0 `high_hz` is k >= 2 times `low_hz`, within `cents` of the multiple.
bool IsWholeMultiple(double high_hz, double low_hz, double cents) {
  if (!(high_hz > 0.0 && low_hz > 0.0 && std::isfinite(high_hz) && std::isfinite(low_hz))) return false;
  const double ratio = high_hz / low_hz;
  const double k = std::nearbyint(ratio);
  return k >= 2.0 && std::abs(1200.0 * std::log2(ratio / k)) <= cents;
}

// Nine terms summed as numpy's pairwise sum does for n = 9: eight partial sums, combined as a tree,
// then the ninth.
inline double SumOfNine(const double* v) {
  return (((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))) + v[8];
}
}  // namespace

PitchFrameReader::PitchFrameReader(PitchFrameReaderSettings settings)
    : settings_(Checked(std::move(settings))),
      analyser_(settings_.periodicity),
      frame_(settings_.periodicity.frame_length, 0.0),
      rise_(std::pow(10.0, settings_.hold_rise_db / 10.0)) {}

template <typename Score>
PitchFrame PitchFrameReader::Decode(const Score* scores) const {
  const int n = num_bins();
  int best = 0;  // numpy's argmax: the first maximum, or the first NaN (a broken model's NaN is not hidden)
  for (int k = 0; k < n; ++k) {
    if (std::isnan(static_cast<double>(scores[k]))) {
      best = k;
      break;
    }
    if (static_cast<double>(scores[k]) > static_cast<double>(scores[best])) best = k;
  }
  double weights[9], weighted[9];
  for (int j = 0; j < 9; ++j) {
    const int k = best - 4 + j;
    const bool inside = k >= 0 && k < n;  // bins past either end weigh nothing
    const int clipped = std::clamp(k, 0, n - 1);
    weights[j] = inside ? static_cast<double>(scores[clipped]) : 0.0;
    weighted[j] = weights[j] * settings_.bin_cents[clipped];
  }
  const double total = SumOfNine(weights);
  const double cents = total > 0.0 ? SumOfNine(weighted) / total : settings_.bin_cents[best];
  return {10.0 * std::pow(2.0, cents / 1200.0), static_cast<double>(scores[best]), 0.0};
}

template <typename Score, typename Sample>
PitchFrame PitchFrameReader::Read(const Score* scores, const Sample* frame, double threshold) {
  const PitchFrame bins = Decode(scores);
  std::copy(frame, frame + frame_length(), frame_.begin());
  return Held(Steady(bins, threshold), threshold);
}

PitchFrame PitchFrameReader::Held(PitchFrame read, double threshold) {
  const bool sure = read.confidence >= threshold;
  if (!sure && !(held_f0_hz_ > 0.0)) return read;
  const double energy = analyser_.FrameEnergy();  // the frame's, measured by Steady's NSDF
  if (sure) {
    held_f0_hz_ = std::isfinite(read.f0_hz) && read.f0_hz > 0.0 ? read.f0_hz : 0.0;  // a broken frame holds nothing
    frames_since_sure_ = 0;
    quietest_ = energy;
  } else if (frames_since_sure_ < settings_.hold_frames && energy <= quietest_ * rise_) {
    ++frames_since_sure_;  // the note fading, into noise perhaps: its pitch is the best guess left
    quietest_ = std::min(quietest_, energy);
    if (read.confidence < settings_.hold_below) read.f0_hz = held_f0_hz_;
  } else {
    held_f0_hz_ = 0.0;  // held long enough, or a new sound
  }
  return read;
}

PitchFrame PitchFrameReader::Steady(PitchFrame bins, double threshold) {
  const double need = steady_ ? settings_.steady_hold : settings_.steady_clarity;
  Period period, own;
  bool use = false;
  if (bins.confidence >= threshold) {  // bins sure: the steady period near their f0, if there is one
    std::tie(period, own) = analyser_.Periods(frame_.data(), bins.f0_hz, settings_.near_cents);
    use = period.clarity >= need;
    // ... unless that period is a whole multiple of the frame's own, as steady: a frame periodic at the shorter
    // lag is periodic at its multiples too, so the bins read the tone an octave or a twelfth low (a 2 kHz
    // whistle, at the top of the bins' range, read as 667 Hz) and the shorter period is the tone's
    // (as steady as a tone must be to start being one, even while the stream is steady: no octave flips at the
    // hysteresis' lower threshold)
    if (use && own.clarity >= settings_.steady_clarity &&
        IsWholeMultiple(own.f0_hz, period.f0_hz, settings_.near_cents) &&
        analyser_.FundamentalShare(frame_.data(), own.f0_hz, settings_.harmonics) >= settings_.fundamental_share) {
      period = own;
    }
  } else {
    own = period = analyser_.OwnPeriod(frame_.data());
  }
  // bins unsure, or sure with no steady period near them: a steady tone (sounding its fundamental) they misread?
  if (!use && own.clarity >= need &&
      analyser_.FundamentalShare(frame_.data(), own.f0_hz, settings_.harmonics) >= settings_.fundamental_share) {
    period = own;
    use = true;
  }
  steady_ = use;
  if (use) return {period.f0_hz, std::max(bins.confidence, period.clarity), period.clarity};
  return {bins.f0_hz, bins.confidence, period.clarity};
}

template PitchFrame PitchFrameReader::Decode<float>(const float*) const;
template PitchFrame PitchFrameReader::Decode<double>(const double*) const;
template PitchFrame PitchFrameReader::Read<float, float>(const float*, const float*, double);
template PitchFrame PitchFrameReader::Read<float, double>(const float*, const double*, double);
template PitchFrame PitchFrameReader::Read<double, float>(const double*, const float*, double);
template PitchFrame PitchFrameReader::Read<double, double>(const double*, const double*, double);

}  // namespace edgetag
