// `cryo inspect`: an image directory as JSON.
#pragma once

#include <string>

#include "core/sys/result.h"

namespace cryo {

// Decodes (and so validates) every file of the image. Page runs are listed
// only when with_pages is set; otherwise each mm shows their totals.
Result<std::string> inspect_image(const std::string& dir, bool with_pages);

}  // namespace cryo
