#include "edgetag/frontend_config.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace edgetag {

namespace {
void Require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("invalid front-end config: " + message);
}
}  // namespace

void FrontendConfig::Validate() const {
  Require(sample_rate > 0, "sample_rate must be positive");
  Require(win_length >= 2, "win_length must be at least 2 samples");
  Require(hop_length >= 1, "hop_length must be at least 1 sample");
  Require(hop_length <= win_length, "hop_length must not exceed win_length");
  Require(n_fft >= win_length, "n_fft must be at least win_length");
  Require(n_fft >= 4 && (n_fft & (n_fft - 1)) == 0, "n_fft must be a power of two >= 4");
  Require(n_bins >= 1, "n_bins must be at least 1");
  Require(std::isfinite(fmin) && std::isfinite(fmax), "fmin and fmax must be finite");
  Require(fmin >= 0.0, "fmin must be >= 0 Hz");
  Require(fmax <= sample_rate / 2.0, "fmax is above the Nyquist frequency");
  Require(fmin < fmax, "fmin must be below fmax");
  Require(preemphasis >= 0.0 && preemphasis < 1.0, "preemphasis must be in [0, 1)");
  // The vectorised log needs normal doubles; 1e-30 is far below any useful floor.
  Require(log_floor >= 1e-30 && std::isfinite(log_floor), "log_floor must be at least 1e-30");
  Require(log1p_scale > 0.0 && std::isfinite(log1p_scale), "log1p_scale must be positive");
  Require(db_ref > 0.0 && db_ref <= 1e30, "db_ref must be in (0, 1e30]");
  if (filterbank == FilterbankKind::kLogFreq) {
    Require(bins_per_octave >= 1, "bins_per_octave must be at least 1");
    Require(fmin > 0.0, "logfreq bands need fmin > 0");
    Require(fmin * std::exp2(static_cast<double>(n_bins) / bins_per_octave) <= fmax * (1 + 1e-9),
            "logfreq bands reach above fmax");
  }
}

std::string FrontendConfig::ToString() const {
  std::ostringstream os;
  os << "FrontendConfig(sample_rate=" << sample_rate << ", win_length=" << win_length
     << ", hop_length=" << hop_length << ", n_fft=" << n_fft << ", n_bins=" << n_bins
     << ", fmin=" << fmin << ", fmax=" << fmax << ")";
  return os.str();
}

}  // namespace edgetag
