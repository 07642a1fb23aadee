// PeriodicityAnalyser: the NSDF against its definition, the period of a steady tone, silence,
// bad settings, and no allocation per frame.

#include "test_helpers.h"

#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "edgetag/periodicity.h"

namespace edgetag_test {

using edgetag::PeriodicityAnalyser;
using edgetag::PeriodicitySettings;

namespace {
constexpr double kTwoPi = 6.28318530717958647692;

// n(tau) = 2 sum_{j < W} x[j] x[j + tau] / sum_{j < W} (x[j]^2 + x[j + tau]^2) of the mean-removed frame.
std::vector<double> NsdfByDefinition(std::vector<double> x, int tau_max) {
  double mean = 0.0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(x.size());
  for (double& v : x) v -= mean;
  const int width = static_cast<int>(x.size()) - tau_max;
  std::vector<double> n(static_cast<std::size_t>(tau_max) + 1);
  for (int tau = 0; tau <= tau_max; ++tau) {
    double r = 0.0, m = 0.0;
    for (int j = 0; j < width; ++j) {
      r += x[j] * x[j + tau];
      m += x[j] * x[j] + x[j + tau] * x[j + tau];
    }
    n[tau] = m > 1e-12 ? std::fmax(-1.0, std::fmin(1.0, 2.0 * r / m)) : 0.0;
  }
  return n;
}

PeriodicitySettings Settings() {
  PeriodicitySettings s;
  s.sample_rate = 16000;
  s.frame_length = 1024;
  s.fmin = 31.7;
  s.fmax = 2000.0;
  s.refine_above = 0.9;
  return s;
}
}  // namespace

void TestNsdfMatchesItsDefinition() {
  PeriodicityAnalyser a(Settings());
  CHECK(a.tau_max() == 505 && a.tau_min() == 8);
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0.0, 1.0);
  for (int trial = 0; trial < 4; ++trial) {
    std::vector<double> x(1024);
    for (int j = 0; j < 1024; ++j) x[j] = 0.3 * std::sin(kTwoPi * (110.0 + 200.0 * trial) * j / 16000.0) + 0.1 * noise(rng) + 0.5;
    const auto ref = NsdfByDefinition(x, a.tau_max());
    std::vector<double> n(static_cast<std::size_t>(a.tau_max()) + 1);
    a.Nsdf(x.data(), n.data());
    double worst = 0.0;
    for (std::size_t k = 0; k < n.size(); ++k) worst = std::fmax(worst, std::fabs(n[k] - ref[k]));
    CHECK_MSG(worst < 1e-12, "trial " << trial << " max |nsdf - definition| " << worst);
  }
}

void TestPeriodOfASteadyToneAndOfSilence() {
  PeriodicityAnalyser a(Settings());
  for (double f0 : {55.0, 261.63, 1500.0}) {
    std::vector<double> x(1024);
    for (int j = 0; j < 1024; ++j) x[j] = 0.3 * std::sin(kTwoPi * f0 * j / 16000.0 + 0.3);
    for (const auto p : {a.NearPeriod(x.data(), f0 * std::pow(2.0, 25.0 / 1200.0), 50.0), a.OwnPeriod(x.data())}) {
      const double cents = 1200.0 * std::log2(p.f0_hz / f0);
      CHECK_MSG(p.clarity > 0.99 && std::fabs(cents) < 0.5, "f0 " << f0 << ": " << p.f0_hz << " Hz, clarity " << p.clarity);
    }
    CHECK_MSG(std::fabs(a.FundamentalShare(x.data(), f0, 5) - 1.0) < 1e-12, "a sine sounds its fundamental, f0 " << f0);
  }
  const std::vector<double> silence(1024, 0.0);
  const auto near = a.NearPeriod(silence.data(), 220.0, 50.0), own = a.OwnPeriod(silence.data());
  CHECK(near.f0_hz == 0.0 && near.clarity == 0.0 && own.f0_hz == 0.0 && own.clarity == 0.0);
  CHECK(a.FundamentalShare(silence.data(), 220.0, 5) == 0.0);
}

void TestPeriodicityRejectsBadSettingsAndAllocatesNothingPerFrame() {
  for (auto change : {+[](PeriodicitySettings& s) { s.frame_length = 4; }, +[](PeriodicitySettings& s) { s.fmin = 0.0; },
                      +[](PeriodicitySettings& s) { s.fmax = s.fmin; }}) {
    PeriodicitySettings s = Settings();
    change(s);
    CHECK_THROWS(std::invalid_argument, PeriodicityAnalyser(s));
  }
  PeriodicityAnalyser a(Settings());
  std::vector<double> x(1024), n(static_cast<std::size_t>(a.tau_max()) + 1);
  for (int j = 0; j < 1024; ++j) x[j] = std::sin(kTwoPi * 440.0 * j / 16000.0);
  a.OwnPeriod(x.data());  // warm-up
  const long long before = alloc_count::g_allocations.load();
  for (int i = 0; i < 10; ++i) {
    a.Nsdf(x.data(), n.data());
    a.NearPeriod(x.data(), 440.0, 50.0);
    a.OwnPeriod(x.data());
    a.FundamentalShare(x.data(), 440.0, 5);
  }
  CHECK_MSG(alloc_count::g_allocations.load() == before, "allocations per frame: " << (alloc_count::g_allocations.load() - before));
}

}  // namespace edgetag_test
