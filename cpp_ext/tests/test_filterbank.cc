// Filterbank: non-empty bands, mel scales, Slaney constant area, Kaldi peaks.

#include "test_helpers.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "edgetag/filterbank.h"

namespace edgetag_test {

using edgetag::Filterbank;
using edgetag::FilterbankKind;
using edgetag::FilterNorm;

namespace {

std::vector<FrontendConfig> FilterbankConfigs() {
  std::vector<FrontendConfig> out;
  for (const auto& nc : AllConfigs()) out.push_back(nc.config);
  FrontendConfig htk = DefaultPreset();
  htk.filterbank = FilterbankKind::kMelHtk;
  out.push_back(htk);
  FrontendConfig htk_none = htk;
  htk_none.filter_norm = FilterNorm::kNone;
  out.push_back(htk_none);
  FrontendConfig logf = ExoticConfig();
  logf.filter_norm = FilterNorm::kNone;
  out.push_back(logf);
  return out;
}

}  // namespace

void TestFilterbankEveryBandNonEmpty() {
  for (const auto& c : FilterbankConfigs()) {
    Filterbank fb(c);
    const int bins = c.NumFftBins();
    CHECK(fb.num_bands() == c.n_bins);
    CHECK(static_cast<int>(fb.edges_hz().size()) == c.n_bins + 2);
    const auto dense = fb.Dense(bins);
    CHECK(dense.size() == static_cast<std::size_t>(c.n_bins) * bins);
    for (int m = 0; m < c.n_bins; ++m) {
      double mx = 0.0, mn = 0.0;
      for (int k = 0; k < bins; ++k) {
        mx = std::max(mx, dense[m * bins + k]);
        mn = std::min(mn, dense[m * bins + k]);
      }
      CHECK_MSG(mx > 0.0, c.ToString() << " band " << m << " is empty");
      CHECK_MSG(mn >= 0.0, c.ToString() << " band " << m << " has a negative weight");
    }
    // Edges increase, first/last as configured (mel kinds).
    const auto& e = fb.edges_hz();
    for (std::size_t i = 1; i < e.size(); ++i) CHECK(e[i] > e[i - 1]);
    if (c.filterbank != FilterbankKind::kLogFreq) {
      CHECK_MSG(std::abs(e.front() - c.fmin) <= 1e-9 * std::max(1.0, c.fmin), "first edge " << e.front());
      CHECK_MSG(std::abs(e.back() - c.fmax) <= 1e-9 * c.fmax, "last edge " << e.back());
    }
    // Apply == dense matrix-vector product.
    std::mt19937 rng(5);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<double> spec(bins);
    for (double& v : spec) v = u(rng);
    std::vector<double> got(c.n_bins);
    fb.Apply(spec.data(), got.data());
    for (int m = 0; m < c.n_bins; ++m) {
      double expect = 0.0;
      for (int k = 0; k < bins; ++k) expect += dense[m * bins + k] * spec[k];
      CHECK_MSG(std::abs(got[m] - expect) <= 1e-12 * std::max(1e-30, std::abs(expect)),
                "band " << m << " Apply " << got[m] << " vs dense " << expect);
    }
  }
}

void TestFilterbankMelScales() {
  // HTK: 1000 Hz -> 999.99 mel; Slaney: linear to 1 kHz (15 mel), log above.
  CHECK(std::abs(edgetag::HzToMel(1000.0, false) - 2595.0 * std::log10(1.0 + 1000.0 / 700.0)) <= 1e-9);
  CHECK(std::abs(edgetag::HzToMel(1000.0, true) - 15.0) <= 1e-12);
  CHECK(std::abs(edgetag::HzToMel(500.0, true) - 7.5) <= 1e-12);
  CHECK(std::abs(edgetag::HzToMel(6400.0, true) - 42.0) <= 1e-9);  // 15 + 27
  for (double hz : {0.0, 20.0, 440.0, 999.0, 1000.0, 1001.0, 4000.0, 11025.0}) {
    for (bool slaney : {false, true}) {
      const double back = edgetag::MelToHz(edgetag::HzToMel(hz, slaney), slaney);
      CHECK_MSG(std::abs(back - hz) <= 1e-9 * std::max(1.0, hz), "round trip " << hz << " -> " << back);
    }
  }
}

void TestFilterbankSlaneyConstantArea() {
  // Fine FFT resolution so that the Riemann sum approximates the triangle area.
  for (FilterbankKind kind : {FilterbankKind::kMelSlaney, FilterbankKind::kMelHtk, FilterbankKind::kLogFreq}) {
    FrontendConfig c = DefaultPreset();
    c.filterbank = kind;
    c.filter_norm = FilterNorm::kSlaney;
    c.n_fft = 8192;
    if (kind == FilterbankKind::kLogFreq) {
      c.fmin = 220.0;
      c.n_bins = 60;
    }
    Filterbank fb(c);
    const int bins = c.NumFftBins();
    const double df = static_cast<double>(c.sample_rate) / c.n_fft;
    const auto dense = fb.Dense(bins);
    const auto& e = fb.edges_hz();
    for (int m = 0; m < c.n_bins; ++m) {
      double area = 0.0, peak = 0.0;
      for (int k = 0; k < bins; ++k) {
        area += dense[m * bins + k] * df;
        peak = std::max(peak, dense[m * bins + k]);
      }
      // Area of a triangle of height 2/(right-left) over (right-left) is 1.
      CHECK_MSG(std::abs(area - 1.0) <= 0.02, "kind " << static_cast<int>(kind) << " band " << m << " area " << area);
      CHECK_MSG(peak <= 2.0 / (e[m + 2] - e[m]) * (1 + 1e-12), "band " << m << " peak " << peak);
    }
  }
}

void TestFilterbankKaldiPeaksAtOne() {
  for (int n_fft : {512, 4096}) {
    FrontendConfig c = KaldiPreset();
    c.n_fft = n_fft;
    Filterbank fb(c);
    const int bins = c.NumFftBins();
    const auto dense = fb.Dense(bins);
    const auto& e = fb.edges_hz();
    double best_peak = 0.0;
    for (int m = 0; m < c.n_bins; ++m) {
      // Triangles are linear in mel: recompute every weight independently.
      const double left = edgetag::HzToMel(e[m], false), centre = edgetag::HzToMel(e[m + 1], false),
                   right = edgetag::HzToMel(e[m + 2], false);
      double peak = 0.0, expected_peak = 0.0, max_err = 0.0;
      for (int k = 0; k < bins; ++k) {
        const double mel = edgetag::HzToMel(static_cast<double>(k) * c.sample_rate / c.n_fft, false);
        const double w = std::max(0.0, std::min((mel - left) / (centre - left), (right - mel) / (right - centre)));
        max_err = std::max(max_err, std::abs(dense[m * bins + k] - w));
        expected_peak = std::max(expected_peak, w);
        peak = std::max(peak, dense[m * bins + k]);
      }
      CHECK_MSG(max_err <= 1e-12, "n_fft " << n_fft << " band " << m << " weight error " << max_err);
      CHECK_MSG(peak <= 1.0 + 1e-12, "n_fft " << n_fft << " band " << m << " peak " << peak << " > 1");
      CHECK_MSG(std::abs(peak - expected_peak) <= 1e-12, "band " << m << " peak " << peak);
      if (n_fft == 4096) {
        // Bins are ~4 Hz apart; the lowest band is ~22 Hz wide per side, so the
        // nearest bin to every centre has weight above 0.9.
        CHECK_MSG(peak >= 0.9, "n_fft 4096 band " << m << " peak " << peak);
      }
      best_peak = std::max(best_peak, peak);
    }
    CHECK_MSG(best_peak >= 0.99, "n_fft " << n_fft << " highest peak " << best_peak);
  }
  // A bin that lands exactly on a centre gets weight exactly 1 (linear-in-Hz
  // triangles, norm none): fmin 0, fmax 8000, n_bins 1 -> centre at 4000 Hz,
  // which is FFT bin 128 of 512 at 16 kHz... for HTK the centre is the mel
  // midpoint, so use logfreq: centre = fmin = 1000 Hz = bin 32 at 16 kHz/512.
  {
    FrontendConfig c = DefaultPreset();
    c.filterbank = FilterbankKind::kLogFreq;
    c.filter_norm = FilterNorm::kNone;
    c.fmin = 1000.0;
    c.n_bins = 12;
    c.bins_per_octave = 12;
    Filterbank fb(c);
    const auto dense = fb.Dense(c.NumFftBins());
    CHECK_MSG(std::abs(dense[32] - 1.0) <= 1e-12, "logfreq band 0 weight at 1000 Hz is " << dense[32]);
  }
}

// An infinite bin makes the bands that weight it infinite and leaves every
// other band bit for bit as it is without that bin (no 0 * inf = NaN from a
// band's zero weights, whichever way Apply is computed).
void TestFilterbankInfiniteBinStaysInItsBands() {
  for (const auto& c : FilterbankConfigs()) {
    Filterbank fb(c);
    const int bins = c.NumFftBins();
    const auto dense = fb.Dense(bins);
    std::mt19937 rng(11);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<double> spec(bins);
    for (double& v : spec) v = u(rng);
    std::vector<double> finite(c.n_bins), got(c.n_bins);
    for (int k = 0; k < bins; k += 7) {
      std::vector<double> zeroed = spec, with_inf = spec;
      zeroed[k] = 0.0;
      with_inf[k] = std::numeric_limits<double>::infinity();
      fb.Apply(zeroed.data(), finite.data());
      fb.Apply(with_inf.data(), got.data());
      for (int m = 0; m < c.n_bins; ++m) {
        if (dense[static_cast<std::size_t>(m) * bins + k] > 0.0) {
          CHECK_MSG(std::isinf(got[m]) && got[m] > 0, "bin " << k << " band " << m << ": " << got[m]);
        } else {
          CHECK_MSG(got[m] == finite[m] && !std::isnan(got[m]),
                    "bin " << k << " band " << m << ": " << got[m] << " vs " << finite[m]);
        }
      }
    }
  }
}

}  // namespace edgetag_test
