// StreamingFrontend: chunk invariance, input types, frame counts, capacity,
// non-finite samples, Reset, accessors, and its allocation-free steady state.

#include "test_helpers.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>
#include <vector>

namespace edgetag_test {

using edgetag::FilterbankKind;

namespace {

// Pushes x in the given chunk sizes, checking NumFramesForPush and the
// counters at every step; returns all frames.
template <typename T>
std::vector<float> StreamFeatures(StreamingFrontend& s, const std::vector<T>& x,
                                  const std::vector<std::size_t>& chunks, bool* ok) {
  const std::size_t bins = static_cast<std::size_t>(s.num_bins());
  std::vector<float> all;
  std::size_t pos = 0;
  for (std::size_t n : chunks) {
    const std::size_t predicted = s.NumFramesForPush(n);
    const std::uint64_t emitted_before = s.frames_emitted();
    // Exactly the predicted capacity (plus a canary row that must stay untouched).
    std::vector<float> out((predicted + 1) * bins, -12345.0f);
    const std::size_t got = s.Push(x.data() + pos, n, out.data(), predicted);
    pos += n;
    if (got != predicted) {
      std::printf("    Push(%zu) returned %zu frames, NumFramesForPush said %zu\n", n, got, predicted);
      *ok = false;
    }
    if (s.frames_emitted() != emitted_before + got) *ok = false;
    if (s.num_pending() >= static_cast<std::size_t>(s.config().win_length)) *ok = false;
    for (std::size_t i = 0; i < bins; ++i) {
      if (out[predicted * bins + i] != -12345.0f) *ok = false;  // wrote past capacity
    }
    all.insert(all.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(got * bins));
  }
  return all;
}

// Random partition of n samples; about a third of the chunks are 0 or 1 samples.
std::vector<std::size_t> RandomPartition(std::size_t n, std::size_t max_chunk, std::mt19937& rng) {
  std::vector<std::size_t> chunks;
  std::uniform_int_distribution<int> kind(0, 5);
  std::uniform_int_distribution<std::size_t> size(2, max_chunk);
  std::size_t left = n;
  while (left > 0) {
    std::size_t c;
    switch (kind(rng)) {
      case 0: c = 0; break;
      case 1: c = 1; break;
      default: c = size(rng); break;
    }
    c = std::min(c, left);
    chunks.push_back(c);
    left -= c;
  }
  chunks.push_back(0);
  return chunks;
}

template <typename T>
void CheckChunkInvariance(const NamedConfig& nc, std::uint32_t seed) {
  const FrontendConfig& c = nc.config;
  const std::size_t n = static_cast<std::size_t>(c.win_length) * 6 + 3 * c.hop_length + 17;
  const auto x = RandomSignal<T>(n, seed);
  const auto batch = BatchFeatures(c, x);
  CHECK_MSG(batch.size() == c.NumFrames(n) * c.n_bins, nc.name);
  std::mt19937 rng(seed);
  // Whole signal at once, one sample at a time, and random partitions.
  std::vector<std::vector<std::size_t>> partitions;
  partitions.push_back({n});
  partitions.push_back(std::vector<std::size_t>(n, 1));
  for (std::size_t max_chunk : {std::size_t{3}, std::size_t{50}, static_cast<std::size_t>(c.win_length) + 7, std::size_t{3000}}) {
    partitions.push_back(RandomPartition(n, max_chunk, rng));
  }
  for (const auto& chunks : partitions) {
    StreamingFrontend s(c);
    bool ok = true;
    const auto streamed = StreamFeatures(s, x, chunks, &ok);
    CHECK_MSG(ok, nc.name << ": NumFramesForPush / counters / capacity mismatch (" << chunks.size() << " chunks)");
    CHECK_MSG(BitIdentical(streamed, batch),
              nc.name << ": streamed frames (" << streamed.size() / c.n_bins << ") differ from ComputeFeatures ("
                      << batch.size() / c.n_bins << "), " << chunks.size() << " chunks");
    CHECK(s.frames_emitted() == c.NumFrames(n));
    CHECK(s.num_pending() == n - c.NumFrames(n) * static_cast<std::size_t>(c.hop_length));
  }
}

template <typename T>
void CheckNonFiniteRejected(T bad) {
  const FrontendConfig c = DefaultPreset();
  auto x = RandomSignal<T>(3000, 21);
  const auto batch = BatchFeatures(c, x);
  StreamingFrontend s(c);
  std::vector<float> out(64 * 64);
  std::vector<float> streamed;
  std::size_t f = s.Push(x.data(), 555, out.data(), 64);
  streamed.insert(streamed.end(), out.begin(), out.begin() + f * 64);
  const std::size_t pending = s.num_pending();
  const std::uint64_t emitted = s.frames_emitted();
  // Bad sample in the middle (after samples that would complete frames), and at the very end.
  for (std::size_t bad_at : {std::size_t{500}, std::size_t{0}, std::size_t{999}}) {
    std::vector<T> chunk(x.begin() + 555, x.begin() + 1555);
    chunk[bad_at] = bad;
    std::vector<float> sentinel(out.size(), 7.0f);
    CHECK_THROWS(std::invalid_argument, s.Push(chunk.data(), chunk.size(), sentinel.data(), 64));
    CHECK(s.num_pending() == pending);
    CHECK(s.frames_emitted() == emitted);
  }
  // ComputeFeatures rejects it as well.
  {
    std::vector<T> bad_signal = x;
    bad_signal[1234] = bad;
    std::vector<float> o(c.NumFrames(bad_signal.size()) * 64);
    CHECK_THROWS(std::invalid_argument, ComputeFeatures(c, bad_signal.data(), bad_signal.size(), o.data()));
  }
  // The stream continues as if the bad pushes never happened.
  f = s.Push(x.data() + 555, x.size() - 555, out.data(), 64);
  streamed.insert(streamed.end(), out.begin(), out.begin() + f * 64);
  CHECK(BitIdentical(streamed, batch));
}

// Heap allocations during `pushes` steady-state pushes of `chunk` samples (after a warm-up push).
template <typename T>
long long AllocationsDuringPushes(std::size_t chunk, int pushes, bool* frames_ok) {
  const FrontendConfig c = DefaultPreset();
  StreamingFrontend s(c);  // construction allocates; not measured
  const auto x = RandomSignal<T>(chunk * 64, 77);
  const std::size_t max_frames = s.config().NumFrames(chunk + static_cast<std::size_t>(c.win_length)) + 1;
  std::vector<float> out(max_frames * static_cast<std::size_t>(c.n_bins));
  // Warm-up push.
  s.Push(x.data(), chunk, out.data(), max_frames);
  std::size_t total_frames = 0;
  const long long before = alloc_count::g_allocations.load();
  for (int i = 0; i < pushes; ++i) {
    const T* src = x.data() + (static_cast<std::size_t>(i) % 64) * chunk;
    total_frames += s.Push(src, chunk, out.data(), max_frames);
  }
  const long long after = alloc_count::g_allocations.load();
  // Sanity: the pushes really ran and produced the expected number of frames.
  const std::size_t expected = c.NumFrames(chunk * (static_cast<std::size_t>(pushes) + 1)) -
                               c.NumFrames(chunk);
  *frames_ok = total_frames == expected && total_frames > 0;
  return after - before;
}

}  // namespace

void TestStreamingChunkInvariance() {
  std::uint32_t seed = 17;
  for (const auto& nc : AllConfigs()) {
    CheckChunkInvariance<float>(nc, seed++);
    CheckChunkInvariance<double>(nc, seed++);
    CheckChunkInvariance<std::int16_t>(nc, seed++);
  }
}

void TestInputTypesAgree() {
  // int16 is scaled by 1/32768; float widens to double exactly.
  for (const auto& nc : AllConfigs()) {
    const FrontendConfig& c = nc.config;
    const std::size_t n = static_cast<std::size_t>(c.win_length) * 4;
    const auto xi = RandomSignal<std::int16_t>(n, 3);
    std::vector<double> xd(n);
    for (std::size_t i = 0; i < n; ++i) xd[i] = xi[i] / 32768.0;
    CHECK_MSG(BitIdentical(BatchFeatures(c, xi), BatchFeatures(c, xd)), nc.name << ": int16 != double/32768");
    const auto xf = RandomSignal<float>(n, 4);
    const std::vector<double> xfd(xf.begin(), xf.end());
    CHECK_MSG(BitIdentical(BatchFeatures(c, xf), BatchFeatures(c, xfd)), nc.name << ": float != double(float)");
  }
}

void TestNumFramesForPushSequence() {
  StreamingFrontend s(DefaultPreset());  // win 400, hop 160
  std::vector<float> x(2000, 0.25f);
  std::vector<float> out(20 * 64);
  struct Step {
    std::size_t push, frames, pending_after;
  };
  const Step steps[] = {{0, 0, 0},     {399, 0, 399}, {1, 1, 240},   {159, 0, 399}, {1, 1, 240},
                        {0, 0, 240},   {480, 3, 240}, {800, 5, 240}, {1, 0, 241},   {3, 0, 244}};
  for (const Step& st : steps) {
    CHECK_MSG(s.NumFramesForPush(st.push) == st.frames,
              "NumFramesForPush(" << st.push << ") = " << s.NumFramesForPush(st.push) << ", want " << st.frames);
    const std::size_t got = s.Push(x.data(), st.push, out.data(), 20);
    CHECK_MSG(got == st.frames, "Push(" << st.push << ") = " << got << ", want " << st.frames);
    CHECK_MSG(s.num_pending() == st.pending_after, "pending " << s.num_pending() << ", want " << st.pending_after);
  }
  CHECK(s.frames_emitted() == 10u);
  // Large pushes: the prediction holds for sizes far beyond one window.
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{159}, std::size_t{160}, std::size_t{1999}}) {
    const std::size_t predicted = s.NumFramesForPush(n);
    CHECK(predicted == DefaultPreset().NumFrames(s.num_pending() + n));
    CHECK(s.Push(x.data(), n, out.data(), 20) == predicted);
  }
}

void TestCapacityTooSmallLeavesStreamUnchanged() {
  const FrontendConfig c = DefaultPreset();
  const auto x = RandomSignal<float>(4000, 8);
  const auto batch = BatchFeatures(c, x);
  StreamingFrontend s(c);
  std::vector<float> out(64 * 64);
  std::vector<float> streamed;
  std::size_t f = s.Push(x.data(), 700, out.data(), 64);
  streamed.insert(streamed.end(), out.begin(), out.begin() + f * 64);
  const std::size_t pending = s.num_pending();
  const std::uint64_t emitted = s.frames_emitted();
  const std::size_t need = s.NumFramesForPush(1000);
  CHECK(need >= 2);
  CHECK_THROWS(std::invalid_argument, s.Push(x.data() + 700, 1000, out.data(), need - 1));
  CHECK(s.num_pending() == pending);
  CHECK(s.frames_emitted() == emitted);
  f = s.Push(x.data() + 700, 3300, out.data(), 64);
  streamed.insert(streamed.end(), out.begin(), out.begin() + f * 64);
  CHECK(BitIdentical(streamed, batch));
}

void TestNonFiniteSamplesThrow() {
  CheckNonFiniteRejected<float>(std::numeric_limits<float>::quiet_NaN());
  CheckNonFiniteRejected<float>(std::numeric_limits<float>::infinity());
  CheckNonFiniteRejected<float>(-std::numeric_limits<float>::infinity());
  CheckNonFiniteRejected<double>(std::numeric_limits<double>::quiet_NaN());
  CheckNonFiniteRejected<double>(std::numeric_limits<double>::infinity());
  CheckNonFiniteRejected<double>(-std::numeric_limits<double>::infinity());
  CheckNonFiniteRejected<double>(std::numeric_limits<double>::signaling_NaN());
}

void TestReset() {
  for (const auto& nc : AllConfigs()) {
    const FrontendConfig& c = nc.config;
    const std::size_t n = static_cast<std::size_t>(c.win_length) * 3 + 11;
    const auto x = RandomSignal<double>(n, 31);
    const auto y = RandomSignal<double>(n, 32);
    StreamingFrontend s(c);
    std::vector<float> out(c.NumFrames(n) * c.n_bins + c.n_bins);
    // Half of x, then Reset: the next push starts a new signal.
    s.Push(x.data(), n / 2 + 1, out.data(), c.NumFrames(n) + 1);
    s.Reset();
    CHECK_MSG(s.num_pending() == 0u, nc.name);
    CHECK_MSG(s.frames_emitted() == 0u, nc.name);
    CHECK(s.NumFramesForPush(static_cast<std::size_t>(c.win_length) - 1) == 0u);
    const std::size_t f = s.Push(y.data(), n, out.data(), c.NumFrames(n));
    CHECK(f == c.NumFrames(n));
    out.resize(f * c.n_bins);
    CHECK_MSG(BitIdentical(out, BatchFeatures(c, y)), nc.name << ": frames after Reset differ from a fresh signal");
    CHECK(s.frames_emitted() == f);
    // Reset of a fresh stream and double Reset are harmless.
    StreamingFrontend fresh(c);
    fresh.Reset();
    fresh.Reset();
    CHECK(fresh.num_pending() == 0u);
  }
}

void TestPreallocatedAccessors() {
  const FrontendConfig c = KaldiPreset();
  StreamingFrontend s(c);
  CHECK(s.num_bins() == 80);
  CHECK(s.config().n_bins == 80);
  CHECK(s.config().filterbank == FilterbankKind::kMelKaldi);
  CHECK(s.num_pending() == 0u);
  CHECK(s.frames_emitted() == 0u);
  // Pushing nothing (even with a null output) is a no-op.
  CHECK(s.Push(static_cast<const float*>(nullptr), 0, nullptr, 0) == 0u);
  CHECK(s.num_pending() == 0u);
}

// Allocation-free steady state: the counter (alloc_count.cc) sees every
// allocation, and steady-state pushes make none.
void TestAllocationCounterWorks() {
  // The volatile sink keeps the compiler from eliding new/delete pairs.
  static void* volatile sink = nullptr;
  (void)sink;
  const long long before = alloc_count::g_allocations.load();
  {
    auto* p = new int(3);
    sink = p;
    delete p;
    auto* a = new double[7];
    sink = a;
    delete[] a;
    auto* q = new (std::nothrow) char[5];
    sink = q;
    delete[] q;
    struct alignas(64) Wide {
      double v[8];
    };
    auto* w = new Wide;  // aligned operator new
    sink = w;
    CHECK(reinterpret_cast<std::uintptr_t>(w) % 64 == 0);
    delete w;
    std::vector<double> v(10);
    sink = v.data();
  }
  (void)sink;
  const long long after = alloc_count::g_allocations.load();
  CHECK_MSG(after - before == 5, "counted " << (after - before) << " allocations, want 5");
}

void TestSteadyStatePushesAllocateNothing() {
  struct Result {
    const char* type;
    std::size_t chunk;
    long long allocations;
    bool frames_ok;
  };
  std::vector<Result> results;
  results.reserve(6);
  for (std::size_t chunk : {std::size_t{160}, std::size_t{512}}) {
    bool ok = false;
    long long a = AllocationsDuringPushes<float>(chunk, 10000, &ok);
    results.push_back({"float", chunk, a, ok});
    a = AllocationsDuringPushes<double>(chunk, 10000, &ok);
    results.push_back({"double", chunk, a, ok});
    a = AllocationsDuringPushes<std::int16_t>(chunk, 10000, &ok);
    results.push_back({"int16", chunk, a, ok});
  }
  for (const Result& r : results) {
    CHECK_MSG(r.allocations == 0,
              r.type << " pushes of " << r.chunk << ": " << r.allocations << " heap allocations in 10000 pushes");
    CHECK_MSG(r.frames_ok, r.type << " pushes of " << r.chunk << ": unexpected frame count");
  }
}

}  // namespace edgetag_test
