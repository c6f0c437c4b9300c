#include "common/error.h"

#include <cstring>

namespace tessera {

std::string Error::ToString() const {
  std::string out = message_;
  const Error* inner = this;
  while (inner->cause_) {
    inner = inner->cause_.get();
    out += ": ";
    out += inner->message_;
  }
  if (errno_value_ != 0) {
    out += ": ";
    out += std::strerror(errno_value_);
  }
  return out;
}

}  // namespace tessera
