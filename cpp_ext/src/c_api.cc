// The C API (edgetag/c_api.h) over StreamingFrontend: argument checks, and
// every C++ exception turned into a return code plus a per-thread message.
#include "edgetag/c_api.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

#include "edgetag/config_json.h"
#include "edgetag/streaming_frontend.h"

struct edgetag_frontend {
  explicit edgetag_frontend(const edgetag::FrontendConfig& config) : stream(config) {}
  edgetag::StreamingFrontend stream;
};

namespace {

thread_local std::string g_last_error;

void SetError(const char* function, const char* message) noexcept {
  try {
    g_last_error = std::string(function) + ": " + message;
  } catch (...) {  // out of memory for the message itself: keep what fits
    g_last_error.clear();
  }
}

// Runs body; an exception becomes `failed` and this thread's last error.
template <typename T, typename Body>
T Guarded(const char* function, T failed, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    SetError(function, "out of memory");
  } catch (const std::exception& e) {
    SetError(function, e.what());
  } catch (...) {
    SetError(function, "unknown error");
  }
  return failed;
}

void Require(bool ok, const char* message) {
  if (!ok) throw std::invalid_argument(message);
}

long ToLong(std::size_t frames) {
  Require(frames <= static_cast<std::size_t>(std::numeric_limits<long>::max()), "frame count does not fit a long");
  return static_cast<long>(frames);
}

// More samples than this would overflow the stream's sample count.
constexpr std::size_t kMaxPush = std::numeric_limits<std::size_t>::max() / 4;

template <typename T>
long Push(const char* function, edgetag_frontend* fe, const T* x, std::size_t n, float* out, std::size_t out_frames) {
  return Guarded<long>(function, -1, [&] {
    Require(fe != nullptr, "fe is NULL");
    Require(x != nullptr || n == 0, "x is NULL");
    Require(out != nullptr || out_frames == 0, "out is NULL");
    Require(n <= kMaxPush, "n is too large");
    return ToLong(fe->stream.Push(x, n, out, out_frames));
  });
}

}  // namespace

extern "C" {

edgetag_frontend* edgetag_frontend_create(const char* config_json, char* err, size_t err_len) {
  edgetag_frontend* fe = Guarded<edgetag_frontend*>("edgetag_frontend_create", nullptr, [&] {
    Require(config_json != nullptr, "config_json is NULL");
    return new edgetag_frontend(edgetag::FrontendConfigFromJson(config_json));
  });
  if (fe == nullptr && err != nullptr && err_len > 0) {
    const std::size_t n = std::min(g_last_error.size(), err_len - 1);
    std::memcpy(err, g_last_error.data(), n);
    err[n] = '\0';
  }
  return fe;
}

int edgetag_frontend_num_bins(const edgetag_frontend* fe) {
  return Guarded<int>("edgetag_frontend_num_bins", -1, [&] {
    Require(fe != nullptr, "fe is NULL");
    return fe->stream.num_bins();
  });
}

int edgetag_frontend_sample_rate(const edgetag_frontend* fe) {
  return Guarded<int>("edgetag_frontend_sample_rate", -1, [&] {
    Require(fe != nullptr, "fe is NULL");
    return fe->stream.config().sample_rate;
  });
}

long edgetag_frontend_frames_for_push(const edgetag_frontend* fe, size_t n_samples) {
  return Guarded<long>("edgetag_frontend_frames_for_push", -1, [&] {
    Require(fe != nullptr, "fe is NULL");
    Require(n_samples <= kMaxPush, "n_samples is too large");
    return ToLong(fe->stream.NumFramesForPush(n_samples));
  });
}

long edgetag_frontend_push_f32(edgetag_frontend* fe, const float* x, size_t n, float* out, size_t out_frames) {
  return Push("edgetag_frontend_push_f32", fe, x, n, out, out_frames);
}

long edgetag_frontend_push_s16(edgetag_frontend* fe, const int16_t* x, size_t n, float* out, size_t out_frames) {
  return Push("edgetag_frontend_push_s16", fe, x, n, out, out_frames);
}

void edgetag_frontend_reset(edgetag_frontend* fe) {
  if (fe == nullptr) return;
  Guarded<int>("edgetag_frontend_reset", -1, [&] {
    fe->stream.Reset();
    return 0;
  });
}

void edgetag_frontend_destroy(edgetag_frontend* fe) { delete fe; }

const char* edgetag_last_error(void) { return g_last_error.c_str(); }

}  // extern "C"
