// The C API (edgetag/c_api.h): the same frames as the C++ core, errors as return codes and a
// per-thread message, a failed push leaves the stream unchanged.

#include "test_helpers.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "edgetag/c_api.h"

namespace edgetag_test {

namespace {

const char kMusicnnJson[] =  // FrontendConfig.preset("musicnn").to_json(), verbatim
    "{\"bins_per_octave\": 12, \"compression\": \"log10_1p\", \"db_ref\": 1.0, \"filter_norm\": \"slaney\", "
    "\"filterbank\": \"mel_slaney\", \"fmax\": 8000.0, \"fmin\": 0.0, \"hop_length\": 256, \"log1p_scale\": "
    "10000.0, \"log_floor\": 1e-06, \"n_bins\": 96, \"n_fft\": 512, \"preemphasis\": 0.0, \"remove_dc_offset\": "
    "false, \"sample_rate\": 16000, \"spectrum\": \"power\", \"win_length\": 512, \"window\": \"hann\", "
    "\"window_periodic\": true, \"window_placement\": \"center\"}";

bool Contains(const char* haystack, const char* needle) { return std::strstr(haystack, needle) != nullptr; }

// Pushes x in chunks of `chunk` samples through the C API; all frames, in order.
template <typename T, typename PushFn>
std::vector<float> PushAll(edgetag_frontend* fe, const std::vector<T>& x, std::size_t chunk, PushFn push) {
  const auto bins = static_cast<std::size_t>(edgetag_frontend_num_bins(fe));
  std::vector<float> all, out;
  for (std::size_t i = 0; i < x.size(); i += chunk) {
    const std::size_t n = std::min(chunk, x.size() - i);
    const long want = edgetag_frontend_frames_for_push(fe, n);
    out.resize(static_cast<std::size_t>(want) * bins + 1);
    const long got = push(fe, x.data() + i, n, out.data(), static_cast<std::size_t>(want));
    CHECK_MSG(got == want, "push returned " << got << ", expected " << want << ": " << edgetag_last_error());
    if (got > 0) all.insert(all.end(), out.begin(), out.begin() + got * static_cast<long>(bins));
  }
  return all;
}

}  // namespace

void TestCApiFramesEqualTheCore() {
  char err[256] = "untouched";
  edgetag_frontend* fe = edgetag_frontend_create(kMusicnnJson, err, sizeof err);
  CHECK(fe != nullptr);
  if (fe == nullptr) return;
  CHECK(std::strcmp(err, "untouched") == 0);  // err is written on failure only
  CHECK(edgetag_frontend_num_bins(fe) == 96 && edgetag_frontend_sample_rate(fe) == 16000);
  CHECK(edgetag_frontend_frames_for_push(fe, 511) == 0 && edgetag_frontend_frames_for_push(fe, 512) == 1);

  const FrontendConfig config = MusicnnPreset();
  const auto xf = RandomSignal<float>(20000, 7);
  const auto xs = RandomSignal<std::int16_t>(20000, 8);
  for (std::size_t chunk : {1u, 7u, 256u, 1000u, 20000u}) {
    CHECK_MSG(BitIdentical(PushAll(fe, xf, chunk, edgetag_frontend_push_f32), BatchFeatures(config, xf)),
              "float32, chunk " << chunk);
    edgetag_frontend_reset(fe);
    CHECK_MSG(BitIdentical(PushAll(fe, xs, chunk, edgetag_frontend_push_s16), BatchFeatures(config, xs)),
              "int16, chunk " << chunk);
    edgetag_frontend_reset(fe);
  }
  CHECK(edgetag_frontend_push_f32(fe, nullptr, 0, nullptr, 0) == 0);  // an empty push is fine
  edgetag_frontend_destroy(fe);
  edgetag_frontend_destroy(nullptr);
  edgetag_frontend_reset(nullptr);
}

void TestCApiCreateErrors() {
  char err[256];
  CHECK(edgetag_frontend_create(nullptr, err, sizeof err) == nullptr);
  CHECK(Contains(err, "edgetag_frontend_create: config_json is NULL"));
  CHECK(std::strcmp(err, edgetag_last_error()) == 0);

  std::string no_bins = kMusicnnJson;
  no_bins.replace(no_bins.find("\"n_bins\": 96, "), std::strlen("\"n_bins\": 96, "), "");
  CHECK(edgetag_frontend_create(no_bins.c_str(), err, sizeof err) == nullptr);
  CHECK_MSG(Contains(err, "invalid front-end config: missing field(s) n_bins"), err);
  CHECK(edgetag_frontend_create("{\"sample_rate\": 16000", nullptr, 0) == nullptr);  // err may be NULL
  CHECK(Contains(edgetag_last_error(), "invalid JSON"));

  // More bands than the FFT resolves: valid fields, but a band covers no FFT bin.
  std::string empty_band = kMusicnnJson;
  empty_band.replace(empty_band.find("\"n_bins\": 96"), std::strlen("\"n_bins\": 96"), "\"n_bins\": 250");
  CHECK(edgetag_frontend_create(empty_band.c_str(), err, sizeof err) == nullptr);
  CHECK_MSG(Contains(err, "band"), err);

  // A short buffer gets the start of the message, NUL-terminated.
  char tiny[8];
  std::memset(tiny, 'x', sizeof tiny);
  CHECK(edgetag_frontend_create(nullptr, tiny, sizeof tiny) == nullptr);
  CHECK(std::strcmp(tiny, "edgetag") == 0);
  CHECK(edgetag_frontend_num_bins(nullptr) < 0 && Contains(edgetag_last_error(), "num_bins: fe is NULL"));
  CHECK(edgetag_frontend_sample_rate(nullptr) < 0);
  CHECK(edgetag_frontend_frames_for_push(nullptr, 10) < 0);
}

void TestCApiFailedPushLeavesTheStreamUnchanged() {
  edgetag_frontend* fe = edgetag_frontend_create(kMusicnnJson, nullptr, 0);
  CHECK(fe != nullptr);
  if (fe == nullptr) return;
  const FrontendConfig config = MusicnnPreset();
  const auto x = RandomSignal<float>(3000, 9);
  std::vector<float> out(20 * 96);
  std::vector<float> frames;
  auto keep = [&](long got) {
    if (got > 0) frames.insert(frames.end(), out.begin(), out.begin() + got * 96);
  };
  keep(edgetag_frontend_push_f32(fe, x.data(), 700, out.data(), 20));

  std::vector<float> nan_chunk(x.begin() + 700, x.begin() + 1700);
  nan_chunk[123] = std::numeric_limits<float>::quiet_NaN();
  CHECK(edgetag_frontend_push_f32(fe, nan_chunk.data(), nan_chunk.size(), out.data(), 20) < 0);
  CHECK_MSG(Contains(edgetag_last_error(), "push_f32: sample 123 of the pushed chunk is NaN"), edgetag_last_error());
  CHECK(edgetag_frontend_push_f32(fe, x.data() + 700, 1000, out.data(), 1) < 0);  // needs 4 frames
  CHECK(Contains(edgetag_last_error(), "output holds 1 frames but the push yields"));
  CHECK(edgetag_frontend_push_f32(fe, nullptr, 5, out.data(), 20) < 0 && Contains(edgetag_last_error(), "x is NULL"));
  CHECK(edgetag_frontend_push_s16(nullptr, nullptr, 0, nullptr, 0) < 0);
  CHECK(Contains(edgetag_last_error(), "push_s16: fe is NULL"));
  // successful calls leave the message as it was
  keep(edgetag_frontend_push_f32(fe, x.data() + 700, 2300, out.data(), 20));
  CHECK(Contains(edgetag_last_error(), "push_s16: fe is NULL"));
  CHECK(BitIdentical(frames, BatchFeatures(config, x)));
  edgetag_frontend_destroy(fe);
}

void TestCApiLastErrorIsPerThread() {
  CHECK(edgetag_frontend_num_bins(nullptr) < 0);
  std::string other;
  std::thread t([&other] {
    other = edgetag_last_error();  // nothing failed on this thread yet
    CHECK(edgetag_frontend_create("{}", nullptr, 0) == nullptr);
  });
  t.join();
  CHECK(other.empty());
  CHECK(Contains(edgetag_last_error(), "num_bins: fe is NULL"));  // the other thread's failure is its own
}

}  // namespace edgetag_test
