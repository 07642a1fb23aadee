// pybind11 bindings of the front end and the pitch decoder (periodicity, frame reader): argument checks and
// conversions only.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "edgetag/fft.h"
#include "edgetag/filterbank.h"
#include "edgetag/periodicity.h"
#include "edgetag/pitch_frame_reader.h"
#include "edgetag/streaming_frontend.h"

namespace py = pybind11;
using edgetag::FrontendConfig;

namespace {

template <typename Enum>
Enum Lookup(const py::object& config, const char* field,
            std::initializer_list<std::pair<const char*, Enum>> table) {
  const auto value = py::cast<std::string>(config.attr(field));
  for (const auto& [name, e] : table) {
    if (value == name) return e;
  }
  throw std::invalid_argument(std::string("invalid front-end config: unknown ") + field + " '" + value + "'");
}

// Reads a Python edgetag.runtime.frontend.FrontendConfig (attribute by attribute).
FrontendConfig ConfigFromPython(const py::object& c) {
  using namespace edgetag;
  FrontendConfig cfg;
  cfg.sample_rate = py::cast<int>(c.attr("sample_rate"));
  cfg.win_length = py::cast<int>(c.attr("win_length"));
  cfg.hop_length = py::cast<int>(c.attr("hop_length"));
  cfg.n_fft = py::cast<int>(c.attr("n_fft"));
  cfg.window = Lookup<WindowKind>(c, "window", {{"hann", WindowKind::kHann},
                                                {"hamming", WindowKind::kHamming},
                                                {"rectangular", WindowKind::kRectangular}});
  cfg.window_periodic = py::cast<bool>(c.attr("window_periodic"));
  cfg.window_placement = Lookup<WindowPlacement>(
      c, "window_placement", {{"left", WindowPlacement::kLeft}, {"center", WindowPlacement::kCenter}});
  cfg.remove_dc_offset = py::cast<bool>(c.attr("remove_dc_offset"));
  cfg.preemphasis = py::cast<double>(c.attr("preemphasis"));
  cfg.spectrum = Lookup<SpectrumKind>(c, "spectrum",
                                      {{"power", SpectrumKind::kPower}, {"magnitude", SpectrumKind::kMagnitude}});
  cfg.filterbank = Lookup<FilterbankKind>(c, "filterbank", {{"mel_htk", FilterbankKind::kMelHtk},
                                                            {"mel_slaney", FilterbankKind::kMelSlaney},
                                                            {"mel_kaldi", FilterbankKind::kMelKaldi},
                                                            {"logfreq", FilterbankKind::kLogFreq}});
  cfg.filter_norm =
      Lookup<FilterNorm>(c, "filter_norm", {{"none", FilterNorm::kNone}, {"slaney", FilterNorm::kSlaney}});
  cfg.n_bins = py::cast<int>(c.attr("n_bins"));
  cfg.fmin = py::cast<double>(c.attr("fmin"));
  cfg.fmax = py::cast<double>(c.attr("fmax"));
  cfg.bins_per_octave = py::cast<int>(c.attr("bins_per_octave"));
  cfg.compression = Lookup<CompressionKind>(c, "compression", {{"log", CompressionKind::kLog},
                                                               {"log_clamp", CompressionKind::kLogClamp},
                                                               {"log10_1p", CompressionKind::kLog10Plus1},
                                                               {"db", CompressionKind::kDb},
                                                               {"none", CompressionKind::kNone}});
  cfg.log_floor = py::cast<double>(c.attr("log_floor"));
  cfg.log1p_scale = py::cast<double>(c.attr("log1p_scale"));
  cfg.db_ref = py::cast<double>(c.attr("db_ref"));
  return cfg;
}

enum class SampleType { kFloat32, kFloat64, kInt16 };

// Accepts a 1-D C-contiguous float32, float64 or int16 array; anything else is a clear error.
SampleType CheckSamples(const py::array& a) {
  if (a.ndim() != 1) {
    throw py::value_error("samples must be a 1-D array of mono audio, got " + std::to_string(a.ndim()) +
                          "-D; downmix multi-channel audio first (e.g. x.mean(axis=1))");
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error("samples must be contiguous in memory; pass numpy.ascontiguousarray(samples)");
  }
  // Compare type numbers and byte order, not dtype objects: an equal dtype that
  // is another object (e.g. after pickling) is accepted; a non-native byte
  // order is refused. Cheap enough for every push.
  const py::dtype dt = a.dtype();
  const char order = dt.byteorder();
  static const char kNativeOrder = [] {
    const std::uint16_t one = 1;
    return *reinterpret_cast<const unsigned char*>(&one) == 1 ? '<' : '>';
  }();
  const bool native = order == '=' || order == '|' || order == kNativeOrder;
  if (native) {
    switch (dt.num()) {
      case py::dtype::num_of<float>():
        return SampleType::kFloat32;
      case py::dtype::num_of<double>():
        return SampleType::kFloat64;
      case py::dtype::num_of<std::int16_t>():
        return SampleType::kInt16;
      default:
        break;
    }
  }
  throw py::type_error("samples must be float32, float64 or int16, got " +
                       py::cast<std::string>(py::str(a.dtype())));
}

template <typename Fn>
auto DispatchSamples(SampleType type, const py::array& a, Fn&& fn) {
  switch (type) {
    case SampleType::kFloat32:
      return fn(static_cast<const float*>(a.data()));
    case SampleType::kFloat64:
      return fn(static_cast<const double*>(a.data()));
    case SampleType::kInt16:
      break;
  }
  return fn(static_cast<const std::int16_t*>(a.data()));
}

using FloatArray = py::array_t<float, py::array::c_style>;

// A new C-contiguous float32 [rows, cols] array, straight from numpy's C API
// (array_t's constructor copies shape and strides through heap vectors: a
// measurable part of a 512-sample push).
FloatArray NewFrames(std::size_t rows, int cols) {
  auto& api = py::detail::npy_api::get();
  Py_intptr_t dims[2] = {static_cast<Py_intptr_t>(rows), static_cast<Py_intptr_t>(cols)};
  PyObject* descr = api.PyArray_DescrFromType_(py::detail::npy_api::NPY_FLOAT_);  // new reference, stolen below
  if (descr == nullptr) throw py::error_already_set();
  PyObject* array = api.PyArray_NewFromDescr_(api.PyArray_Type_, descr, 2, dims, nullptr, nullptr, 0, nullptr);
  if (array == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<FloatArray>(array);
}

// Push checked samples (see CheckSamples) into dst. The GIL is released for a
// push that computes frames (about a microsecond each); one that only buffers
// samples takes less time than releasing and retaking the GIL.
std::size_t PushSamples(edgetag::StreamingFrontend& self, SampleType type, const py::array& samples, float* dst,
                        std::size_t capacity, bool computes_frames) {
  const auto n = static_cast<std::size_t>(samples.size());
  return DispatchSamples(type, samples, [&](const auto* src) {
    if (!computes_frames) return self.Push(src, n, dst, capacity);
    py::gil_scoped_release release;
    return self.Push(src, n, dst, capacity);
  });
}

std::size_t PushInto(edgetag::StreamingFrontend& self, const py::array& samples, FloatArray& out) {
  const SampleType type = CheckSamples(samples);
  if (out.ndim() != 2 || out.shape(1) != self.num_bins()) {
    throw py::value_error("out must be a float32 array of shape [frames, " + std::to_string(self.num_bins()) + "]");
  }
  const bool computes_frames = samples.size() >= self.config().hop_length;
  return PushSamples(self, type, samples, out.mutable_data(), static_cast<std::size_t>(out.shape(0)),
                     computes_frames);
}

std::string ShapeText(const py::array& a) {
  std::string shape = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) shape += (d ? ", " : "") + std::to_string(a.shape(d));
  return shape + (a.ndim() == 1 ? ",)" : ")");
}

using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// A frame for a periodicity analyser: 1-D, frame_length samples (converted to float64 if it is not).
const double* CheckFrame(const edgetag::PeriodicityAnalyser& self, const DoubleArray& frame) {
  if (frame.ndim() != 1 || frame.shape(0) != self.frame_length()) {
    throw py::value_error("frames must have " + std::to_string(self.frame_length()) + " samples, got shape " +
                          ShapeText(frame));
  }
  return frame.data();
}

// Calls f with a typed pointer to a float32 or float64 C-contiguous array (anything else: its float64 copy).
template <typename F>
auto WithFloats(const py::array& a, F&& f) {
  if (py::isinstance<py::array_t<float, py::array::c_style>>(a)) return f(static_cast<const float*>(a.data()));
  if (py::isinstance<py::array_t<double, py::array::c_style>>(a)) return f(static_cast<const double*>(a.data()));
  const DoubleArray copy = DoubleArray::ensure(a);
  if (!copy) throw py::type_error("expected an array of numbers");
  return f(copy.data());
}

// One frame's scores and audio, or n of each ([n, bins] and [n, frame_length]): checked against the reader.
void CheckReaderInput(const edgetag::PitchFrameReader& self, const py::array& scores, const py::array& frames, int ndim) {
  const bool ok = scores.ndim() == ndim && frames.ndim() == ndim && scores.shape(ndim - 1) == self.num_bins() &&
                  frames.shape(ndim - 1) == self.frame_length() && (ndim == 1 || scores.shape(0) == frames.shape(0));
  if (!ok) {
    const std::string n = ndim == 1 ? "" : "n, ";
    throw py::value_error("a pitch reader takes scores [" + n + std::to_string(self.num_bins()) + "] and frames [" + n +
                          std::to_string(self.frame_length()) + "], got shapes " + ShapeText(scores) + " and " +
                          ShapeText(frames));
  }
}
}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "edgetag C++ core: the streaming spectrogram front end, and the pitch decoder's NSDF periods and frame reader.";

  py::class_<edgetag::StreamingFrontend>(m, "StreamingFrontend")
      .def(py::init([](const py::object& config) {
             return std::make_unique<edgetag::StreamingFrontend>(ConfigFromPython(config));
           }),
           py::arg("config"))
      .def_property_readonly("num_bins", &edgetag::StreamingFrontend::num_bins)
      .def_property_readonly("num_pending", &edgetag::StreamingFrontend::num_pending)
      .def_property_readonly("frames_emitted", &edgetag::StreamingFrontend::frames_emitted)
      .def("num_frames_for_push", &edgetag::StreamingFrontend::NumFramesForPush, py::arg("num_samples"))
      .def(
          "push",
          [](edgetag::StreamingFrontend& self, const py::array& samples) {
            const SampleType type = CheckSamples(samples);
            const auto n = static_cast<std::size_t>(samples.size());
            const auto frames = self.NumFramesForPush(n);
            FloatArray out = NewFrames(frames, self.num_bins());
            const auto written = PushSamples(self, type, samples, out.mutable_data(), frames, frames > 0);
            if (written != frames) {  // another thread pushed in between: return what was written
              return FloatArray(out[py::slice(0, static_cast<py::ssize_t>(written), 1)]);
            }
            return out;
          },
          py::arg("samples"))
      .def("push_into", &PushInto, py::arg("samples"), py::arg("out").noconvert())
      .def("reset", &edgetag::StreamingFrontend::Reset);

  m.def(
      "compute_features",
      [](const py::object& config, const py::array& samples) {
        const FrontendConfig cfg = ConfigFromPython(config);
        cfg.Validate();
        const SampleType type = CheckSamples(samples);
        const auto n = static_cast<std::size_t>(samples.size());
        FloatArray out({static_cast<py::ssize_t>(cfg.NumFrames(n)),
                        static_cast<py::ssize_t>(cfg.n_bins)});
        float* dst = out.mutable_data();
        DispatchSamples(type, samples, [&](const auto* src) {
          py::gil_scoped_release release;
          edgetag::ComputeFeatures(cfg, src, n, dst);
          return 0;
        });
        return out;
      },
      py::arg("config"), py::arg("samples"));

  m.def(
      "filterbank_matrix",
      [](const py::object& config) {
        const FrontendConfig cfg = ConfigFromPython(config);
        cfg.Validate();
        const edgetag::Filterbank fb(cfg);
        const auto dense = fb.Dense(cfg.NumFftBins());
        py::array_t<double> out({cfg.n_bins, cfg.NumFftBins()});
        std::copy(dense.begin(), dense.end(), out.mutable_data());
        return out;
      },
      py::arg("config"), "Dense filterbank weights [n_bins, n_fft // 2 + 1] as the C++ core builds them.");

  m.def(
      "rfft",
      [](const py::array_t<double, py::array::c_style | py::array::forcecast>& x) {
        edgetag::RealFft fft(static_cast<int>(x.size()));
        py::array_t<double> re(fft.num_bins()), im(fft.num_bins());
        fft.Forward(x.data(), re.mutable_data(), im.mutable_data());
        return py::make_tuple(re, im);
      },
      py::arg("x"), "Real FFT of a power-of-two length frame (real and imaginary parts).");

  py::class_<edgetag::PeriodicityAnalyser>(m, "PeriodicityAnalyser")
      .def(py::init([](int sample_rate, int frame_length, double fmin, double fmax, double refine_above,
                       double key_maximum_ratio, double multiple_keep) {
             return std::make_unique<edgetag::PeriodicityAnalyser>(edgetag::PeriodicitySettings{
                 sample_rate, frame_length, fmin, fmax, refine_above, key_maximum_ratio, multiple_keep});
           }),
           py::arg("sample_rate"), py::arg("frame_length"), py::arg("fmin"), py::arg("fmax"),
           py::arg("refine_above"), py::arg("key_maximum_ratio"), py::arg("multiple_keep"))
      .def_property_readonly("tau_min", &edgetag::PeriodicityAnalyser::tau_min)
      .def_property_readonly("tau_max", &edgetag::PeriodicityAnalyser::tau_max)
      .def(
          "nsdf",
          [](edgetag::PeriodicityAnalyser& self, const DoubleArray& frame) {
            const double* x = CheckFrame(self, frame);
            py::array_t<double> out(self.tau_max() + 1);
            self.Nsdf(x, out.mutable_data());
            return out;
          },
          py::arg("frame"))
      .def(
          "near_period",
          [](edgetag::PeriodicityAnalyser& self, const DoubleArray& frame, double near_hz, double cents) {
            const auto p = self.NearPeriod(CheckFrame(self, frame), near_hz, cents);
            return py::make_tuple(p.f0_hz, p.clarity);
          },
          py::arg("frame"), py::arg("near_hz"), py::arg("cents"))
      .def(
          "own_period",
          [](edgetag::PeriodicityAnalyser& self, const DoubleArray& frame) {
            const auto p = self.OwnPeriod(CheckFrame(self, frame));
            return py::make_tuple(p.f0_hz, p.clarity);
          },
          py::arg("frame"))
      .def(
          "periods",
          [](edgetag::PeriodicityAnalyser& self, const DoubleArray& frame, double near_hz, double cents) {
            const auto [near, own] = self.Periods(CheckFrame(self, frame), near_hz, cents);
            return py::make_tuple(py::make_tuple(near.f0_hz, near.clarity), py::make_tuple(own.f0_hz, own.clarity));
          },
          py::arg("frame"), py::arg("near_hz"), py::arg("cents"))
      .def(
          "fundamental_share",
          [](edgetag::PeriodicityAnalyser& self, const DoubleArray& frame, double f0_hz, int harmonics) {
            return self.FundamentalShare(CheckFrame(self, frame), f0_hz, harmonics);
          },
          py::arg("frame"), py::arg("f0_hz"), py::arg("harmonics"));

  py::class_<edgetag::PitchFrameReader>(m, "PitchFrameReader")
      .def(py::init([](int sample_rate, int frame_length, double fmin, double fmax, double refine_above,
                       double key_maximum_ratio, double multiple_keep, std::vector<double> bin_cents,
                       double steady_clarity, double steady_hold, double fundamental_share, int harmonics,
                       double near_cents, double hold_below, int hold_frames, double hold_rise_db) {
             edgetag::PitchFrameReaderSettings settings;
             settings.periodicity = {sample_rate, frame_length, fmin, fmax, refine_above, key_maximum_ratio,
                                     multiple_keep};
             settings.bin_cents = std::move(bin_cents);
             settings.steady_clarity = steady_clarity;
             settings.steady_hold = steady_hold;
             settings.fundamental_share = fundamental_share;
             settings.harmonics = harmonics;
             settings.near_cents = near_cents;
             settings.hold_below = hold_below;
             settings.hold_frames = hold_frames;
             settings.hold_rise_db = hold_rise_db;
             return std::make_unique<edgetag::PitchFrameReader>(std::move(settings));
           }),
           py::arg("sample_rate"), py::arg("frame_length"), py::arg("fmin"), py::arg("fmax"),
           py::arg("refine_above"), py::arg("key_maximum_ratio"), py::arg("multiple_keep"), py::arg("bin_cents"),
           py::arg("steady_clarity"), py::arg("steady_hold"), py::arg("fundamental_share"), py::arg("harmonics"),
           py::arg("near_cents"), py::arg("hold_below") = 0.0, py::arg("hold_frames") = 0,
           py::arg("hold_rise_db") = 1.0)
      .def_property("steady", &edgetag::PitchFrameReader::steady, &edgetag::PitchFrameReader::set_steady)
      .def("end_tone", &edgetag::PitchFrameReader::EndTone)
      .def(
          "decode",
          [](const edgetag::PitchFrameReader& self, const py::array& scores) {
            if (scores.ndim() != 1 || scores.shape(0) != self.num_bins()) {
              throw py::value_error("scores must be [" + std::to_string(self.num_bins()) + "], got shape " +
                                    ShapeText(scores));
            }
            const auto r = WithFloats(scores, [&](const auto* s) { return self.Decode(s); });
            return py::make_tuple(r.f0_hz, r.confidence);
          },
          py::arg("scores"))
      .def(
          "read",
          [](edgetag::PitchFrameReader& self, const py::array& scores, const py::array& frame, double threshold) {
            CheckReaderInput(self, scores, frame, 1);
            const auto r = WithFloats(scores, [&](const auto* s) {
              return WithFloats(frame, [&](const auto* x) { return self.Read(s, x, threshold); });
            });
            return py::make_tuple(r.f0_hz, r.confidence, r.clarity);
          },
          py::arg("scores"), py::arg("frame"), py::arg("threshold"))
      .def(
          "read_frames",
          [](edgetag::PitchFrameReader& self, const py::array& scores, const py::array& frames, double threshold) {
            CheckReaderInput(self, scores, frames, 2);
            const auto n = scores.shape(0);
            py::array_t<double> f0(n), confidence(n), clarity(n);
            WithFloats(scores, [&](const auto* s) {
              return WithFloats(frames, [&](const auto* x) {
                for (py::ssize_t i = 0; i < n; ++i) {
                  const auto r = self.Read(s + i * self.num_bins(), x + i * self.frame_length(), threshold);
                  f0.mutable_at(i) = r.f0_hz;
                  confidence.mutable_at(i) = r.confidence;
                  clarity.mutable_at(i) = r.clarity;
                }
                return 0;
              });
            });
            return py::make_tuple(f0, confidence, clarity);
          },
          py::arg("scores"), py::arg("frames"), py::arg("threshold"));
}
