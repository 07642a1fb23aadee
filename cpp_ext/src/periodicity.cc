#include "edgetag/periodicity.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace edgetag {

namespace {
constexpr double kPi = 3.14159265358979323846;

int NextPowerOfTwo(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

PeriodicitySettings Checked(const PeriodicitySettings& s) {
  if (s.frame_length < 8 || !(s.fmin > 0.0) || !(s.fmin < s.fmax) || s.sample_rate <= 0) {
    throw std::invalid_argument("a periodicity analyser needs frames of >= 8 samples and 0 < fmin < fmax, got " +
                                std::to_string(s.frame_length) + ", " + std::to_string(s.fmin) + ", " +
                                std::to_string(s.fmax));
  }
  return s;
}

// Lags are bounded in double before the cast: a tiny fmin or fmax would overflow an int.
int TauMax(const PeriodicitySettings& s) {
  // fewer than two periods of the lowest pitch in the frame: lower pitches are not measured
  return static_cast<int>(std::min(std::ceil(s.sample_rate / s.fmin), static_cast<double>(s.frame_length / 2)));
}

int TauMin(const PeriodicitySettings& s) {
  return static_cast<int>(std::max(2.0, std::min(std::ceil(s.sample_rate / s.fmax), static_cast<double>(s.frame_length))));
}
// The mean with four accumulators: no chain of dependent additions through the whole frame.
double Mean(const double* x, int n) {
  double sums[4] = {0.0, 0.0, 0.0, 0.0};
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    for (int k = 0; k < 4; ++k) sums[k] += x[j + k];
  }
  for (; j < n; ++j) sums[0] += x[j];
  return ((sums[0] + sums[1]) + (sums[2] + sums[3])) / n;
}
}  // namespace

PeriodicityAnalyser::PeriodicityAnalyser(const PeriodicitySettings& settings)
    : settings_(Checked(settings)),
      tau_min_(TauMin(settings_)),
      tau_max_(TauMax(settings_)),
      width_(settings_.frame_length - tau_max_),
      // A circular correlation of length N >= L wraps no product: the head is zero from W on, and
      // j + tau <= W - 1 + tau_max = L - 1 for every lag asked for.
      n_fft_(std::max(4, NextPowerOfTwo(settings_.frame_length))),
      spectrum_fft_(4 * NextPowerOfTwo(settings_.frame_length)),
      fft_(n_fft_),
      spectrum_(spectrum_fft_) {
  const int bins = n_fft_ / 2 + 1;
  centred_.assign(settings_.frame_length, 0.0);
  padded_.assign(std::max(n_fft_, spectrum_fft_), 0.0);
  for (auto* v : {&whole_re_, &whole_im_, &head_re_, &head_im_, &out_re_, &out_im_}) v->assign(bins, 0.0);
  energy_.assign(settings_.frame_length + 1, 0.0);
  power_.assign(spectrum_fft_ / 2 + 1, 0.0);
  const int n = settings_.frame_length;
  hann_.resize(n);  // symmetric Hann, as numpy.hanning
  for (int j = 0; j < n; ++j) hann_[j] = 0.5 - 0.5 * std::cos(2.0 * kPi * j / (n - 1));
  nsdf_.assign(tau_max_ + 1, 0.0);
  maxima_.reserve(tau_max_);
}

void PeriodicityAnalyser::ComputeNsdf(const double* frame) {
  const int n = settings_.frame_length;
  const double mean = Mean(frame, n);
  for (int j = 0; j < n; ++j) centred_[j] = frame[j] - mean;
  // The running energy, its two halves summed side by side (two chains of dependent additions
  // instead of one through the frame), the first half's total then added to the second's.
  const int mid = n / 2;
  double low = 0.0, high = 0.0;
  energy_[0] = 0.0;
  for (int j = 0; j < mid; ++j) {
    low += centred_[j] * centred_[j];
    energy_[j + 1] = low;
    high += centred_[mid + j] * centred_[mid + j];
    energy_[mid + j + 1] = high;
  }
  for (int j = 2 * mid; j < n; ++j) {  // an odd frame's last sample
    high += centred_[j] * centred_[j];
    energy_[j + 1] = high;
  }
  for (int j = mid + 1; j <= n; ++j) energy_[j] += low;
  // r[tau] = sum_{j < W} x[j] x[j + tau]: the spectrum of the frame times the conjugate of its head's
  // (both zero-padded to n_fft >= L: no product of a lag <= tau_max wraps around)
  std::fill(padded_.begin(), padded_.begin() + n_fft_, 0.0);
  std::copy(centred_.begin(), centred_.end(), padded_.begin());
  fft_.Forward(padded_.data(), whole_re_.data(), whole_im_.data());
  std::fill(padded_.begin() + width_, padded_.begin() + n, 0.0);
  fft_.Forward(padded_.data(), head_re_.data(), head_im_.data());
  // Inverse of the (Hermitian) cross spectrum P through a forward real FFT (the Hartley identity):
  // r[t] = (Re F h[t] - Im F h[t]) / N with h[k] = Re P[k] - Im P[k], and P[N - k] = conj P[k].
  const int half = n_fft_ / 2;
  for (int k = 0; k <= half; ++k) {
    const double pr = whole_re_[k] * head_re_[k] + whole_im_[k] * head_im_[k];
    const double pi = whole_im_[k] * head_re_[k] - whole_re_[k] * head_im_[k];
    padded_[k] = pr - pi;
    if (k > 0 && k < half) padded_[n_fft_ - k] = pr + pi;
  }
  fft_.Forward(padded_.data(), out_re_.data(), out_im_.data());
  const double scale = 1.0 / n_fft_;
  const double e_head = energy_[width_];
  for (int tau = 0; tau <= tau_max_; ++tau) {
    const double r = (out_re_[tau] - out_im_[tau]) * scale;
    const double denominator = e_head + (energy_[width_ + tau] - energy_[tau]);
    const double v = denominator > 1e-12 ? 2.0 * r / denominator : 0.0;
    nsdf_[tau] = std::clamp(v, -1.0, 1.0);
  }
  // positive local maxima after the first negative value (before it: the lobe around lag 0);
  // those below tau_min are kept, so that a tone above the range is seen as one
  maxima_.clear();
  int first_negative = -1;
  for (int tau = 0; tau <= tau_max_; ++tau) {
    if (nsdf_[tau] < 0.0) {
      first_negative = tau;
      break;
    }
  }
  if (first_negative < 0) return;
  for (int tau = std::max(first_negative, 2); tau < tau_max_; ++tau) {
    const double mid = nsdf_[tau];
    if (mid > nsdf_[tau - 1] && mid >= nsdf_[tau + 1] && mid > 0.0) maxima_.push_back(tau);
  }
}

void PeriodicityAnalyser::Nsdf(const double* frame, double* out) {
  ComputeNsdf(frame);
  std::copy(nsdf_.begin(), nsdf_.end(), out);
}

double PeriodicityAnalyser::Parabola(int i) const {
  const double a = nsdf_[i - 1], b = nsdf_[i];
  const double c = i + 1 <= tau_max_ ? nsdf_[i + 1] : b;
  const double curvature = a - 2.0 * b + c;
  if (curvature >= 0.0) return i;
  return i + 0.5 * (a - c) / curvature;
}

Period PeriodicityAnalyser::MultipleRefined(int i) const {
  // The period at maximum i, interpolated there, then at the largest multiple k*i whose maximum keeps
  // multiple_keep of n[i], divided by k. Its clarity is the highest NSDF value at any multiple (at a
  // short period a steady tone's harmonics fall between samples; some multiple lands on a whole lag).
  const double sr = settings_.sample_rate;
  const double tau = Parabola(i);
  int count = static_cast<int>(std::floor(tau_max_ / tau));
  while (count > 0 && count * tau > tau_max_) --count;  // as Python's tau_max // tau where the division rounds up
  double clarity = nsdf_[i];
  for (int k = 1; k <= count; ++k) {
    const auto m = static_cast<long>(std::nearbyint(tau * k));
    clarity = std::max(clarity, nsdf_[std::clamp<long>(m, 0, tau_max_)]);
  }
  if (clarity < settings_.refine_above) return {sr / tau, clarity};
  for (int k = count; k > 1; --k) {
    const int centre = static_cast<int>(std::nearbyint(tau * k));
    const int lo = std::max(centre - 2, 1), hi = std::min(centre + 3, tau_max_);
    if (hi <= lo) continue;
    int j = lo;
    for (int t = lo + 1; t < hi; ++t) {
      if (nsdf_[t] > nsdf_[j]) j = t;
    }
    if (j >= 1 && j < tau_max_ && nsdf_[j] >= nsdf_[j - 1] && nsdf_[j] >= nsdf_[j + 1] &&
        nsdf_[j] >= settings_.multiple_keep * nsdf_[i]) {
      return {sr * k / Parabola(j), clarity};
    }
  }
  return {sr / tau, clarity};
}

Period PeriodicityAnalyser::NearPeriod(const double* frame, double near_hz, double cents) {
  ComputeNsdf(frame);
  return NearFromNsdf(near_hz, cents);
}

Period PeriodicityAnalyser::OwnPeriod(const double* frame) {
  ComputeNsdf(frame);
  return OwnFromNsdf();
}

std::pair<Period, Period> PeriodicityAnalyser::Periods(const double* frame, double near_hz, double cents) {
  ComputeNsdf(frame);
  return {NearFromNsdf(near_hz, cents), OwnFromNsdf()};
}

Period PeriodicityAnalyser::NearFromNsdf(double near_hz, double cents) const {
  if (maxima_.empty() || !(near_hz > 0.0 && std::isfinite(near_hz))) return {};
  const double lag = settings_.sample_rate / near_hz;
  const double spread = std::pow(2.0, cents / 1200.0);
  const double lo = std::max(lag / spread - 1.0, static_cast<double>(tau_min_)), hi = lag * spread + 1.0;
  int best = -1;
  for (const int m : maxima_) {
    if (m >= lo && m <= hi && (best < 0 || nsdf_[m] > nsdf_[best])) best = m;
  }
  if (best < 0) return {};
  const Period candidate = MultipleRefined(best);
  return std::abs(1200.0 * std::log2(candidate.f0_hz / near_hz)) <= cents ? candidate : Period{};
}

Period PeriodicityAnalyser::OwnFromNsdf() const {
  if (maxima_.empty()) return {};
  double highest = nsdf_[maxima_[0]];
  for (const int m : maxima_) highest = std::max(highest, nsdf_[m]);
  int key = maxima_[0];
  for (const int m : maxima_) {
    if (nsdf_[m] >= settings_.key_maximum_ratio * highest) {
      key = m;
      break;
    }
  }
  return key >= tau_min_ ? MultipleRefined(key) : Period{};
}

double PeriodicityAnalyser::FundamentalShare(const double* frame, double f0_hz, int harmonics) {
  if (!(f0_hz > 0.0 && std::isfinite(f0_hz))) return 0.0;
  const int n = settings_.frame_length;
  const double mean = Mean(frame, n);
  std::fill(padded_.begin(), padded_.begin() + spectrum_fft_, 0.0);
  for (int j = 0; j < n; ++j) padded_[j] = (frame[j] - mean) * hann_[j];
  spectrum_.PowerSpectrum(padded_.data(), power_.data());
  const double step = static_cast<double>(settings_.sample_rate) / spectrum_fft_;
  const double bins = static_cast<double>(power_.size());
  double first = 0.0, strongest = 0.0;
  int found = 0;
  for (int h = 1; h <= harmonics; ++h) {
    const double centre = h * f0_hz / step;
    const double lo_bin = std::floor(centre - 1.5), hi_bin = std::ceil(centre + 1.5) + 1.0;
    if (lo_bin < 0.0 || hi_bin > bins) break;  // compared in double: no cast of an out-of-range value
    const auto lo = static_cast<long>(lo_bin), hi = static_cast<long>(hi_bin);
    const double p = *std::max_element(power_.begin() + lo, power_.begin() + hi);
    if (found++ == 0) first = p;
    strongest = std::max(strongest, p);
  }
  return found > 0 && strongest > 0.0 ? first / strongest : 0.0;
}

}  // namespace edgetag
