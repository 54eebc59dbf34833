// Reading a directory.
#pragma once

#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo {

// The names in a directory but . and .., sorted.
Result<std::vector<std::string>> sorted_names(const std::string& dir);

}  // namespace cryo
