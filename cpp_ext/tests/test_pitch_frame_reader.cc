// PitchFrameReader: the bins' decoding, a steady tone's period taking over from unsure or misreading bins,
// the hysteresis, noise left to the bins, bad settings, and no allocation per frame.

#include "test_helpers.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "edgetag/pitch_frame_reader.h"

namespace edgetag_test {

using edgetag::PitchFrameReader;
using edgetag::PitchFrameReaderSettings;

namespace {
constexpr double kTwoPi = 6.28318530717958647692;
constexpr double kCentsBin0 = 1997.3794084376191;  // CREPE's bin 0, cents re 10 Hz

PitchFrameReaderSettings Settings() {
  PitchFrameReaderSettings s;
  s.periodicity.sample_rate = 16000;
  s.periodicity.frame_length = 1024;
  s.periodicity.fmin = 31.7;
  s.periodicity.fmax = 2005.5;
  s.periodicity.refine_above = 0.99;
  for (int k = 0; k < 360; ++k) s.bin_cents.push_back(kCentsBin0 + 20.0 * k);
  return s;
}

double CentsOf(double hz) { return 1200.0 * std::log2(hz / 10.0); }

// A Gaussian bump of the bins around f0 (25 cents wide), peaking at `peak`.
std::vector<float> Bump(double f0, double peak) {
  std::vector<float> s(360);
  for (int k = 0; k < 360; ++k) {
    const double d = (kCentsBin0 + 20.0 * k - CentsOf(f0)) / 25.0;
    s[k] = static_cast<float>(peak * std::exp(-0.5 * d * d));
  }
  return s;
}

std::vector<float> Sine(double f0, int offset = 0) {
  std::vector<float> x(1024);
  for (int j = 0; j < 1024; ++j) x[j] = static_cast<float>(0.3 * std::sin(kTwoPi * f0 * (j + offset) / 16000.0));
  return x;
}
}  // namespace

void TestPitchFrameReaderDecodesTheBins() {
  const PitchFrameReader reader(Settings());
  const auto bump = Bump(440.0, 0.8);
  const auto bins = reader.Decode(bump.data());
  const float highest = *std::max_element(bump.begin(), bump.end());  // the confidence is the highest score
  CHECK_MSG(std::fabs(CentsOf(bins.f0_hz) - CentsOf(440.0)) < 1.0 && bins.confidence == static_cast<double>(highest),
            bins.f0_hz << " Hz, confidence " << bins.confidence);
  std::vector<float> edge(360, 0.0f);  // the argmax at the last bin: its window is clipped
  edge[359] = 1.0f;
  CHECK(std::fabs(reader.Decode(edge.data()).f0_hz - 10.0 * std::pow(2.0, (kCentsBin0 + 20.0 * 359) / 1200.0)) < 1e-9);
  const std::vector<float> zeros(360, 0.0f);  // nothing: the first bin's centre, confidence 0
  const auto none = reader.Decode(zeros.data());
  CHECK(std::fabs(none.f0_hz - 31.70) < 0.01 && none.confidence == 0.0);
}

void TestPitchFrameReaderReadsASteadyTonesPeriod() {
  PitchFrameReader reader(Settings());
  // sure bins 30 cents off a steady sine: the period near them gives the f0, the confidence its clarity
  const auto sure = reader.Read(Bump(440.0 * std::pow(2.0, 30.0 / 1200.0), 0.9).data(), Sine(440.0).data(), 0.5);
  CHECK_MSG(std::fabs(CentsOf(sure.f0_hz) - CentsOf(440.0)) < 0.5 && sure.clarity > 0.99 && sure.confidence >= sure.clarity,
            sure.f0_hz << " Hz, clarity " << sure.clarity);
  CHECK(reader.steady());
  // unsure bins far off a 55 Hz sine: its own period, which sounds its fundamental, voices the frame
  reader.set_steady(false);
  const auto unsure = reader.Read(Bump(63.7, 0.2).data(), Sine(55.0).data(), 0.5);
  CHECK_MSG(std::fabs(CentsOf(unsure.f0_hz) - CentsOf(55.0)) < 0.5 && unsure.confidence > 0.99,
            unsure.f0_hz << " Hz, confidence " << unsure.confidence);
  // white noise: no steady period, the bins' reading stays, and the stream is no longer steady
  std::mt19937 rng(3);
  std::normal_distribution<float> gauss(0.0f, 0.3f);
  std::vector<float> noise(1024);
  for (auto& v : noise) v = gauss(rng);
  const auto bins = reader.Decode(Bump(300.0, 0.4).data());
  const auto heard = reader.Read(Bump(300.0, 0.4).data(), noise.data(), 0.5);
  CHECK(heard.f0_hz == bins.f0_hz && heard.confidence == bins.confidence && heard.clarity < 0.97 && !reader.steady());
}

void TestPitchFrameReaderHysteresis() {
  // a period of clarity between the hold (0.97) and the steady threshold (0.99): used only after a steady frame
  PitchFrameReader reader(Settings());
  std::mt19937 rng(5);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> x = Sine(220.0);
  double clarity = 1.0;
  float level = 0.0f;
  std::vector<float> noisy(1024);
  for (int trial = 0; trial < 200 && !(clarity > 0.97 && clarity < 0.99); ++trial) {  // find such a noise level
    level = 0.005f * static_cast<float>(trial);
    for (int j = 0; j < 1024; ++j) noisy[j] = x[j] + level * gauss(rng);
    reader.set_steady(false);
    clarity = reader.Read(Bump(220.0, 0.9).data(), noisy.data(), 0.5).clarity;
  }
  CHECK_MSG(clarity > 0.97 && clarity < 0.99, "no frame found with a clarity between the thresholds: " << clarity);
  reader.set_steady(false);
  const auto fresh = reader.Read(Bump(220.0, 0.9).data(), noisy.data(), 0.5);
  CHECK(!reader.steady() && fresh.confidence < 0.95);  // the bins' own confidence (0.9-ish), not the period's
  reader.set_steady(true);
  const auto held = reader.Read(Bump(220.0, 0.9).data(), noisy.data(), 0.5);
  CHECK(reader.steady() && held.confidence == held.clarity);
}

void TestPitchFrameReaderHoldsTheLastSureF0() {
  PitchFrameReaderSettings settings = Settings();
  settings.hold_below = 0.2;
  settings.hold_frames = 3;
  PitchFrameReader reader(settings);
  std::mt19937 rng(4);
  std::normal_distribution<float> gauss(0.0f, 0.1f);
  std::vector<float> noise(1024);  // no steady period: the bins' reading, or the hold
  for (auto& v : noise) v = gauss(rng);
  const auto sure = Bump(440.0, 0.9), lost = Bump(700.0, 0.1), between = Bump(700.0, 0.3);
  const double f0 = reader.Read(sure.data(), noise.data(), 0.5).f0_hz;
  for (int i = 0; i < 3; ++i) {  // three frames of the sure f0, each with its own (unvoiced) confidence
    const auto held = reader.Read(lost.data(), noise.data(), 0.5);
    CHECK_MSG(held.f0_hz == f0 && held.confidence < 0.2, i << ": " << held.f0_hz << " Hz, " << held.confidence);
  }
  CHECK(std::fabs(CentsOf(reader.Read(lost.data(), noise.data(), 0.5).f0_hz) - CentsOf(700.0)) < 10.0);  // then its own
  reader.Read(sure.data(), noise.data(), 0.5);
  CHECK(std::fabs(CentsOf(reader.Read(between.data(), noise.data(), 0.5).f0_hz) - CentsOf(700.0)) < 10.0);
  CHECK(reader.Read(lost.data(), noise.data(), 0.5).f0_hz == f0);
  reader.EndTone();  // silence ends it
  CHECK(std::fabs(CentsOf(reader.Read(lost.data(), noise.data(), 0.5).f0_hz) - CentsOf(700.0)) < 10.0);
  // a new sound (a frame 3 dB louder than the quietest since the sure one) ends it
  reader.Read(sure.data(), noise.data(), 0.5);
  std::vector<float> louder(noise), quieter(noise);
  for (auto& v : louder) v *= 1.5f;  // +3.5 dB
  for (auto& v : quieter) v *= 0.5f;
  CHECK(reader.Read(lost.data(), quieter.data(), 0.5).f0_hz == f0);
  CHECK(reader.Read(lost.data(), noise.data(), 0.5).f0_hz != f0);  // +6 dB over the quietest: ended
  CHECK(reader.Read(lost.data(), quieter.data(), 0.5).f0_hz != f0);  // and stays ended
  reader.Read(sure.data(), noise.data(), 0.5);
  CHECK(reader.Read(lost.data(), louder.data(), 0.5).f0_hz != f0);
  settings.hold_frames = -1;
  CHECK_THROWS(std::invalid_argument, PitchFrameReader(settings));
  settings.hold_frames = 3;
  settings.hold_rise_db = -1.0;
  CHECK_THROWS(std::invalid_argument, PitchFrameReader(settings));
  settings.hold_rise_db = 1.0;
  settings.hold_below = 1.5;
  CHECK_THROWS(std::invalid_argument, PitchFrameReader(settings));
}

void TestPitchFrameReaderRejectsBadSettingsAndAllocatesNothingPerFrame() {
  PitchFrameReaderSettings few = Settings();
  few.bin_cents.resize(8);
  CHECK_THROWS(std::invalid_argument, PitchFrameReader(few));
  PitchFrameReaderSettings none = Settings();
  none.harmonics = 0;
  CHECK_THROWS(std::invalid_argument, PitchFrameReader(none));
  PitchFrameReader reader(Settings());
  const auto sure = Bump(440.0, 0.9), unsure = Bump(300.0, 0.1);
  const auto x = Sine(440.0);
  reader.Read(sure.data(), x.data(), 0.5);  // warm-up
  const long long before = alloc_count::g_allocations.load();
  for (int i = 0; i < 10; ++i) {
    reader.Read(sure.data(), x.data(), 0.5);
    reader.Read(unsure.data(), x.data(), 0.5);
  }
  CHECK_MSG(alloc_count::g_allocations.load() == before, "allocations per frame: " << (alloc_count::g_allocations.load() - before));
}

}  // namespace edgetag_test
