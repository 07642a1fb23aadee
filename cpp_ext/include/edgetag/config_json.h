// FrontendConfigFromJson: the front-end config a model card carries, read in C++.
//
// The text is what runtime/frontend/config.py's FrontendConfig.to_json()
// writes (the ``frontend`` object of a model card), read as strictly as
// FrontendConfig.from_json(): every field present, no unknown field, integer
// fields as JSON integers, true/false for flags, enumerations by the names
// Python uses ("hann", "mel_slaney", "log10_1p", ...). The result is validated
// (FrontendConfig::Validate), so a config that comes back can be computed.
#pragma once

#include <string_view>

#include "edgetag/frontend_config.h"

namespace edgetag {

// Throws std::invalid_argument naming the field and the problem.
FrontendConfig FrontendConfigFromJson(std::string_view json);

}  // namespace edgetag
