#include "config/document.h"

#include <algorithm>

namespace tessera::config {

std::string_view KindName(const Node& node) {
  switch (node.kind) {
    case Node::Kind::kNull: return "null";
    case Node::Kind::kBool: return "boolean";
    case Node::Kind::kInteger: return "integer";
    case Node::Kind::kFloat: return "float";
    case Node::Kind::kString: return "string";
    case Node::Kind::kArray: return "array";
    case Node::Kind::kTable: return "table";
    case Node::Kind::kOther: return node.string;
  }
  return "value";
}

LineIndex::LineIndex(std::string_view text) : size_(text.size()) {
  line_starts_.push_back(0);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') line_starts_.push_back(i + 1);
  }
}

Location LineIndex::At(size_t offset) const {
  offset = std::min(offset, size_);
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
  size_t line = static_cast<size_t>(it - line_starts_.begin());  // >= 1
  size_t column = offset - line_starts_[line - 1] + 1;
  return Location{static_cast<int>(line), static_cast<int>(column)};
}

}  // namespace tessera::config
