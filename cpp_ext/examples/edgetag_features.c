/* edgetag_features: a WAV file in, a model's front-end frames out, through
 * the edgetag C API (edgetag/c_api.h).
 *
 *   edgetag_features CONFIG.json INPUT.wav OUTPUT.f32
 *
 * CONFIG.json  the model's front-end config: the "frontend" object of its
 *              card (`edgetag info MODEL --json` prints the card).
 * INPUT.wav    mono, 16-bit PCM or 32-bit float, at the config's sample rate
 *              (the front end never resamples: convert first, e.g. with sox).
 * OUTPUT.f32   the frames: float32 in this machine's byte order, one frame of
 *              num_bins values after another, what the model takes as input.
 *
 * The file is streamed in blocks of 4096 samples, as a microphone would feed
 * it; the frames are bit-identical to Python's
 * edgetag.runtime.frontend.compute_features on the whole file. Plain C99.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <edgetag/c_api.h>

enum { kBlock = 4096 };

typedef struct {
  int format;      /* 1: PCM integer, 3: IEEE float */
  int channels;
  long sample_rate;
  int bits;
  unsigned long data_bytes;
} WavInfo;

static unsigned read_u16(const unsigned char* p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }
static unsigned long read_u32(const unsigned char* p) {
  return (unsigned long)p[0] | (unsigned long)p[1] << 8 | (unsigned long)p[2] << 16 | (unsigned long)p[3] << 24;
}

/* Reads the RIFF/WAVE header up to the start of the samples; 0 on success. */
static int read_wav_header(FILE* f, WavInfo* info, const char* path) {
  unsigned char head[12], chunk[8], fmt[40];
  int have_fmt = 0;
  if (fread(head, 1, 12, f) != 12 || memcmp(head, "RIFF", 4) != 0 || memcmp(head + 8, "WAVE", 4) != 0) {
    fprintf(stderr, "%s: not a RIFF/WAVE file\n", path);
    return -1;
  }
  for (;;) {
    unsigned long size;
    if (fread(chunk, 1, 8, f) != 8) {
      fprintf(stderr, "%s: no data chunk\n", path);
      return -1;
    }
    size = read_u32(chunk + 4);
    if (memcmp(chunk, "fmt ", 4) == 0) {
      unsigned long keep = size < sizeof fmt ? size : sizeof fmt;
      if (size < 16 || fread(fmt, 1, keep, f) != keep || fseek(f, (long)(size - keep + (size & 1)), SEEK_CUR) != 0) {
        fprintf(stderr, "%s: bad fmt chunk\n", path);
        return -1;
      }
      info->format = (int)read_u16(fmt);
      if (info->format == 0xFFFE && size >= 26) info->format = (int)read_u16(fmt + 24); /* WAVE_FORMAT_EXTENSIBLE */
      info->channels = (int)read_u16(fmt + 2);
      info->sample_rate = (long)read_u32(fmt + 4);
      info->bits = (int)read_u16(fmt + 14);
      have_fmt = 1;
    } else if (memcmp(chunk, "data", 4) == 0) {
      if (!have_fmt) {
        fprintf(stderr, "%s: data before the fmt chunk\n", path);
        return -1;
      }
      info->data_bytes = size;
      return 0;
    } else if (fseek(f, (long)(size + (size & 1)), SEEK_CUR) != 0) { /* chunks are padded to even sizes */
      fprintf(stderr, "%s: truncated file\n", path);
      return -1;
    }
  }
}

static char* read_text(const char* path) {
  FILE* f = fopen(path, "rb");
  char* text = NULL;
  long size;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
      (text = malloc((size_t)size + 1)) == NULL || fread(text, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "cannot read %s\n", path);
    free(text);
    if (f != NULL) fclose(f);
    return NULL;
  }
  text[size] = '\0';
  fclose(f);
  return text;
}

int main(int argc, char** argv) {
  char err[512];
  char* config;
  edgetag_frontend* fe;
  FILE *in, *out;
  WavInfo wav = {0, 0, 0, 0, 0};
  unsigned char bytes[kBlock * 4];
  int16_t pcm[kBlock];
  float samples[kBlock];
  float* frames = NULL;
  size_t capacity = 0, frame_bytes;
  unsigned long left, total_frames = 0;
  int bins, status = 1;

  if (argc != 4) {
    fprintf(stderr, "usage: %s CONFIG.json INPUT.wav OUTPUT.f32\n", argv[0]);
    return 2;
  }
  if ((config = read_text(argv[1])) == NULL) return 1;
  fe = edgetag_frontend_create(config, err, sizeof err);
  free(config);
  if (fe == NULL) {
    fprintf(stderr, "%s: %s\n", argv[1], err);
    return 1;
  }
  bins = edgetag_frontend_num_bins(fe);
  frame_bytes = (size_t)bins * sizeof(float);

  if ((in = fopen(argv[2], "rb")) == NULL) {
    fprintf(stderr, "cannot open %s\n", argv[2]);
    edgetag_frontend_destroy(fe);
    return 1;
  }
  if (read_wav_header(in, &wav, argv[2]) != 0) goto done_in;
  if (wav.channels != 1 || !((wav.format == 1 && wav.bits == 16) || (wav.format == 3 && wav.bits == 32))) {
    fprintf(stderr, "%s: %d channel(s), format %d, %d bits; this example reads mono 16-bit PCM or 32-bit float\n",
            argv[2], wav.channels, wav.format, wav.bits);
    goto done_in;
  }
  if (wav.sample_rate != edgetag_frontend_sample_rate(fe)) {
    fprintf(stderr, "%s is at %ld Hz, the front end takes %d Hz: resample it first\n", argv[2], wav.sample_rate,
            edgetag_frontend_sample_rate(fe));
    goto done_in;
  }
  if ((out = fopen(argv[3], "wb")) == NULL) {
    fprintf(stderr, "cannot write %s\n", argv[3]);
    goto done_in;
  }

  for (left = wav.data_bytes / (unsigned long)(wav.bits / 8); left > 0;) {
    size_t n = left < kBlock ? (size_t)left : kBlock, i;
    long want, got;
    if (fread(bytes, (size_t)wav.bits / 8, n, in) != n) {
      fprintf(stderr, "%s: truncated data\n", argv[2]);
      goto done_out;
    }
    left -= n;
    want = edgetag_frontend_frames_for_push(fe, n); /* room for what this push completes */
    if (want > 0 && (size_t)want > capacity) {
      float* grown = realloc(frames, (size_t)want * frame_bytes);
      if (grown == NULL) {
        fprintf(stderr, "out of memory\n");
        goto done_out;
      }
      frames = grown;
      capacity = (size_t)want;
    }
    if (wav.format == 1) { /* little-endian int16, whatever this machine's byte order */
      for (i = 0; i < n; ++i) {
        long v = (long)read_u16(bytes + 2 * i);
        pcm[i] = (int16_t)(v >= 0x8000 ? v - 0x10000 : v);
      }
      got = edgetag_frontend_push_s16(fe, pcm, n, frames, capacity);
    } else {
      for (i = 0; i < n; ++i) {
        uint32_t u = (uint32_t)read_u32(bytes + 4 * i);
        memcpy(&samples[i], &u, sizeof u);
      }
      got = edgetag_frontend_push_f32(fe, samples, n, frames, capacity);
    }
    if (got < 0) { /* NaN or Inf samples in a float file, for example */
      fprintf(stderr, "%s: %s\n", argv[2], edgetag_last_error());
      goto done_out;
    }
    if (got > 0 && fwrite(frames, frame_bytes, (size_t)got, out) != (size_t)got) {
      fprintf(stderr, "cannot write %s\n", argv[3]);
      goto done_out;
    }
    total_frames += (unsigned long)got;
  }
  printf("%lu frames x %d bins -> %s\n", total_frames, bins, argv[3]);
  status = 0;

done_out:
  if (fclose(out) != 0 && status == 0) {
    fprintf(stderr, "cannot write %s\n", argv[3]);
    status = 1;
  }
done_in:
  fclose(in);
  free(frames);
  edgetag_frontend_destroy(fe);
  return status;
}
