/* edgetag C API: the streaming spectrogram front end, for programs in C (or
 * anything that calls C).
 *
 * A model file's card carries its front-end config as a JSON object (the
 * ``frontend`` object, what Python's FrontendConfig.to_json() writes). Give
 * that text to edgetag_frontend_create, push audio at the config's sample
 * rate (mono; float32 in [-1, 1] or int16), and get the exact frames the
 * model was trained and exported with: bit-identical to Python's
 * edgetag.runtime.frontend.compute_features, in any chunking.
 *
 *   char err[256];
 *   edgetag_frontend* fe = edgetag_frontend_create(json, err, sizeof err);
 *   if (!fe) { fprintf(stderr, "%s\n", err); return 1; }
 *   long n = edgetag_frontend_frames_for_push(fe, count);
 *   float* out = malloc((size_t)n * edgetag_frontend_num_bins(fe) * sizeof *out);
 *   n = edgetag_frontend_push_s16(fe, pcm, count, out, (size_t)n);  // frames written, < 0 on error
 *   edgetag_frontend_destroy(fe);
 *
 * Errors: functions returning a pointer return NULL, those returning a count
 * return a negative number; edgetag_last_error() then says why. A failed push
 * (NaN or Inf samples, too small an output) leaves the stream unchanged.
 * Threads: one stream may be used from several threads (pushes are
 * serialised); the last-error message is per thread.
 * Resampling is the caller's job: the front end never resamples.
 * Link: -ledgetag (pkg-config edgetag), or CMake's find_package(edgetag) and
 * edgetag::edgetag (shared) / edgetag::edgetag_static (C++ inside: link with
 * a C++ linker, or add pkg-config --static's libraries).
 */
#ifndef EDGETAG_C_API_H_
#define EDGETAG_C_API_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(EDGETAG_BUILDING_LIBRARY)
#define EDGETAG_API __declspec(dllexport)
#elif defined(EDGETAG_SHARED)
#define EDGETAG_API __declspec(dllimport)
#else
#define EDGETAG_API
#endif
#elif defined(__GNUC__)
#define EDGETAG_API __attribute__((visibility("default")))
#else
#define EDGETAG_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* A streaming front end: the config and the samples a future frame needs. */
typedef struct edgetag_frontend edgetag_frontend;

/* A new stream for config_json (a NUL-terminated JSON object naming every
 * field of the config). Returns NULL on error, with the message in err
 * (truncated to err_len bytes, NUL-terminated; err may be NULL) and in
 * edgetag_last_error(). */
EDGETAG_API edgetag_frontend* edgetag_frontend_create(const char* config_json, char* err, size_t err_len);

/* Values per frame (the config's n_bins); < 0 if fe is NULL. */
EDGETAG_API int edgetag_frontend_num_bins(const edgetag_frontend* fe);

/* Samples per second the stream expects (the config's sample_rate); < 0 if
 * fe is NULL. Not in issue 19's list: a C program needs it to resample. */
EDGETAG_API int edgetag_frontend_sample_rate(const edgetag_frontend* fe);

/* Frames the next push of n_samples samples will write; < 0 on error. */
EDGETAG_API long edgetag_frontend_frames_for_push(const edgetag_frontend* fe, size_t n_samples);

/* Append n samples; writes each completed frame (num_bins floats, frames one
 * after another) to out, which has room for out_frames frames. Returns the
 * frames written, or < 0 on error: fe NULL, x NULL with n > 0, a NaN or
 * infinite sample, or out_frames below edgetag_frontend_frames_for_push(fe, n).
 * int16 samples are scaled by 1/32768. */
EDGETAG_API long edgetag_frontend_push_f32(edgetag_frontend* fe, const float* x, size_t n, float* out,
                                           size_t out_frames);
EDGETAG_API long edgetag_frontend_push_s16(edgetag_frontend* fe, const int16_t* x, size_t n, float* out,
                                           size_t out_frames);

/* Forget pending samples: the next push starts a new signal. NULL is ignored. */
EDGETAG_API void edgetag_frontend_reset(edgetag_frontend* fe);

/* Free the stream. NULL is ignored. */
EDGETAG_API void edgetag_frontend_destroy(edgetag_frontend* fe);

/* The message of this thread's last failed call ("" if none); successful
 * calls leave it as it was. Valid until this thread's next failed call. */
EDGETAG_API const char* edgetag_last_error(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EDGETAG_C_API_H_ */
