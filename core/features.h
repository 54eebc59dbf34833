// The kernel features cryo relies on, probed once; `cryo check` prints them.
#pragma once

#include <string>
#include <vector>

namespace cryo {

struct Feature {
  std::string name;
  bool required = true;  // dump/restore cannot work without it
  bool present = false;
  std::string detail;
};

std::vector<Feature> probe_features();

}  // namespace cryo
