// One frame of a pitch stream read in one step: the student's bin scores decoded
// (CREPE's local weighted average) and, where the frame's audio is a steady tone,
// its period measured (PeriodicityAnalyser) and used for the f0. The rules are
// those of edgetag.runtime.pitch.SteadyTone, which documents them; this is their
// arithmetic, moved here so that a stream's decision costs one call.
//
// A reader keeps the stream's hysteresis (steady()) and its last sure f0 (the hold:
// an unsure frame soon after a sure one reads that f0, see Read) from frame to frame;
// like the analyser it holds, it allocates nothing per frame and serves one thread.
#pragma once

#include <vector>

#include "edgetag/aligned_vector.h"
#include "edgetag/periodicity.h"

namespace edgetag {

struct PitchFrameReaderSettings {
  PeriodicitySettings periodicity;
  std::vector<double> bin_cents;    // centre of each bin, cents re 10 Hz (edgetag.runtime.pitch.bin_cents)
  double steady_clarity = 0.99;     // a period this clear makes the frame a steady tone
  double steady_hold = 0.97;        // ... once the previous frame was one (hysteresis)
  double fundamental_share = 0.1;   // an own period voices the frame only if its fundamental sounds
  int harmonics = 5;                // harmonics the fundamental share compares
  double near_cents = 50.0;         // a period within this of the bins' f0 is "near" them
  double hold_below = 0.0;          // a frame less confident than this reads the last sure frame's f0 ...
  int hold_frames = 0;              // ... if that was at most this many frames before (0: no hold) ...
  double hold_rise_db = 1.0;        // ... and no frame since has been this much louder than the quietest before it
};

struct PitchFrame {
  double f0_hz = 0.0;
  double confidence = 0.0;
  double clarity = 0.0;  // of the period that was considered (0: none)
};

class PitchFrameReader {
 public:
  // Throws std::invalid_argument for fewer than 9 bins, a bad periodicity setting or a bad hold setting.
  explicit PitchFrameReader(PitchFrameReaderSettings settings);

  int num_bins() const { return static_cast<int>(settings_.bin_cents.size()); }
  int frame_length() const { return settings_.periodicity.frame_length; }
  bool steady() const { return steady_; }
  void set_steady(bool steady) { steady_ = steady; }
  // The stream's tone has ended (a silent decision, read without audio): no hysteresis, nothing held.
  void EndTone() {
    steady_ = false;
    held_f0_hz_ = 0.0;
  }

  // The bins' reading alone: argmax and its 4 neighbours each side (clipped at the ends), weighted by
  // their scores, averaged in cents (the argmax bin's centre where they sum to zero); confidence is the
  // argmax score. The nine terms are summed in numpy's order: equal to edgetag.runtime.pitch.decode for finite
  // and NaN scores (a NaN is the argmax, as numpy's), but for the last rounding of the power of two (the
  // compiler's exp2 for pow(2, x)). An infinite score gives a NaN f0 (numpy: NaN, or the bin's centre at an end).
  template <typename Score>
  PitchFrame Decode(const Score* scores) const;

  // Decode, then the frame's period (frame: frame_length samples), as SteadyTone does; updates steady().
  // Then the hold: a frame read at or above threshold is sure and its f0 is kept. The frames after it, while
  // none is hold_rise_db louder than the quietest since the sure one (a new sound) and for at most hold_frames,
  // read that f0 where they are under hold_below (their confidence and clarity stay their own).
  template <typename Score, typename Sample>
  PitchFrame Read(const Score* scores, const Sample* frame, double threshold);

 private:
  PitchFrame Steady(PitchFrame bins, double threshold);  // on the frame already in frame_
  PitchFrame Held(PitchFrame read, double threshold);

  PitchFrameReaderSettings settings_;
  PeriodicityAnalyser analyser_;
  AlignedVector<double> frame_;
  double rise_;  // 10^(hold_rise_db / 10)
  bool steady_ = false;
  double held_f0_hz_ = 0.0;  // the last sure frame's f0 (0: none, or the hold has ended)
  int frames_since_sure_ = 0;
  double quietest_ = 0.0;  // the lowest frame energy (mean removed) since the sure frame
};

}  // namespace edgetag
