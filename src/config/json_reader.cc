// JSON -> Node with nlohmann's SAX parser (no exceptions escape: sax_parse
// reports errors through the handler) and positions recovered on the side.
//
// nlohmann's SAX events carry no positions, but every event corresponds to
// exactly one token, in order, and the only tokens without an event are ':' and
// ','. So the start of an event's token is the first byte after the previous
// event's token that is neither whitespace nor ':' / ','; its end follows from a
// tiny scan of that one token. This keeps the real parser (and its strictness)
// while giving line:column for every key and value.

#include <nlohmann/json.hpp>

#include <string>

#include "config/document.h"

namespace tessera::config {
namespace {

using nlohmann::json;

class Handler {
 public:
  Handler(std::string_view text, const SourceInfo& source, std::vector<Diagnostic>& diagnostics)
      : text_(text), lines_(text), source_(source), diagnostics_(diagnostics) {
    // nlohmann skips a UTF-8 byte order mark; so must the position tracking.
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") last_end_ = 3;
  }

  bool null() { return Value(Node{}); }
  bool boolean(bool value) {
    Node node;
    node.kind = Node::Kind::kBool;
    node.boolean = value;
    return Value(std::move(node));
  }
  bool number_integer(json::number_integer_t value) {
    Node node;
    node.kind = Node::Kind::kInteger;
    node.integer = value;
    return Value(std::move(node));
  }
  bool number_unsigned(json::number_unsigned_t value) {
    Node node;
    node.kind = Node::Kind::kInteger;
    if (value > static_cast<json::number_unsigned_t>(INT64_MAX)) {
      node.integer = INT64_MAX;
      node.integer_overflow = true;
    } else {
      node.integer = static_cast<int64_t>(value);
    }
    return Value(std::move(node));
  }
  bool number_float(json::number_float_t value, const json::string_t& /*text*/) {
    Node node;
    node.kind = Node::Kind::kFloat;
    node.floating = value;
    return Value(std::move(node));
  }
  bool string(json::string_t& value) {
    Node node;
    node.kind = Node::Kind::kString;
    node.string = std::move(value);
    return Value(std::move(node));
  }
  bool binary(json::binary_t& /*value*/) { return Value(Node{}); }  // not produced by JSON
  bool start_object(std::size_t /*size*/) { return Open(Node::Kind::kTable); }
  bool end_object() { return Close(); }
  bool start_array(std::size_t /*size*/) { return Open(Node::Kind::kArray); }
  bool end_array() { return Close(); }
  bool key(json::string_t& value) {
    size_t start = TokenStart();
    last_end_ = StringEnd(start);
    pending_key_ = std::move(value);
    pending_key_location_ = At(start);
    return true;
  }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& error) {
    // nlohmann's message: "[json.exception.parse_error.101] parse error at line
    // 1, column 5: syntax error while parsing value - ..."; keep the part after
    // the position, which we report in our own form.
    std::string message = error.what();
    size_t colon = message.find(": ");
    if (colon != std::string::npos) message = message.substr(colon + 2);
    size_t offset = position > 0 ? position - 1 : 0;
    Location at = At(offset);
    diagnostics_.push_back({source_.file, at.line, at.column, "", "JSON syntax error: " + message});
    failed_ = true;
    return false;
  }

  std::optional<Node> TakeRoot() {
    if (failed_ || !have_root_) return std::nullopt;
    return std::move(root_);
  }

 private:
  Location At(size_t offset) const {
    return source_.has_locations ? lines_.At(offset) : Location{};
  }

  static bool IsSkippable(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ':' || c == ',';
  }

  size_t TokenStart() const {
    size_t p = last_end_;
    while (p < text_.size() && IsSkippable(text_[p])) ++p;
    return p;
  }

  size_t StringEnd(size_t start) const {
    size_t p = start + 1;
    while (p < text_.size()) {
      if (text_[p] == '\\') {
        p += 2;
      } else if (text_[p] == '"') {
        return p + 1;
      } else {
        ++p;
      }
    }
    return text_.size();
  }

  // End of a scalar token starting at `start`.
  size_t ScalarEnd(size_t start) const {
    if (start < text_.size() && text_[start] == '"') return StringEnd(start);
    size_t p = start;
    while (p < text_.size() && !IsSkippable(text_[p]) && text_[p] != ']' && text_[p] != '}' &&
           text_[p] != '[' && text_[p] != '{' && text_[p] != '"') {
      ++p;
    }
    return p;
  }

  bool Value(Node node) {
    size_t start = TokenStart();
    last_end_ = ScalarEnd(start);
    node.location = At(start);
    Attach(std::move(node));
    return true;
  }

  bool Open(Node::Kind kind) {
    size_t start = TokenStart();
    last_end_ = start + 1;
    if (static_cast<int>(stack_.size()) >= kMaxDepth) {
      Location at = At(start);
      diagnostics_.push_back({source_.file, at.line, at.column, "",
                              "document nests deeper than " + std::to_string(kMaxDepth) +
                                  " levels"});
      failed_ = true;
      return false;  // stops the parser
    }
    Node node;
    node.kind = kind;
    node.location = At(start);
    stack_.push_back(Attach(std::move(node)));
    return true;
  }

  bool Close() {
    size_t start = TokenStart();
    last_end_ = start + 1;
    if (!stack_.empty()) stack_.pop_back();
    return true;
  }

  // Adds `node` to the open container (or makes it the root) and returns where
  // it now lives. Pointers on stack_ stay valid: a container only grows while it
  // is the innermost open one, and then nothing deeper is on the stack.
  Node* Attach(Node node) {
    if (stack_.empty()) {
      root_ = std::move(node);
      have_root_ = true;
      return &root_;
    }
    Node* parent = stack_.back();
    if (parent->kind == Node::Kind::kArray) {
      parent->items.push_back(std::move(node));
      return &parent->items.back();
    }
    Member member;
    member.key = std::move(pending_key_);
    member.key_location = pending_key_location_;
    member.value = std::move(node);
    parent->members.push_back(std::move(member));
    return &parent->members.back().value;
  }

  std::string_view text_;
  LineIndex lines_;
  const SourceInfo& source_;
  std::vector<Diagnostic>& diagnostics_;
  size_t last_end_ = 0;
  std::vector<Node*> stack_;
  Node root_;
  bool have_root_ = false;
  bool failed_ = false;
  std::string pending_key_;
  Location pending_key_location_;
};

}  // namespace

std::optional<Node> ReadJson(std::string_view text, const SourceInfo& source,
                             std::vector<Diagnostic>& diagnostics) {
  if (text.size() > kMaxDocumentBytes) {
    diagnostics.push_back({source.file, 0, 0, "", "document is larger than 1 MiB"});
    return std::nullopt;
  }
  Handler handler(text, source, diagnostics);
  json::sax_parse(text.begin(), text.end(), &handler, json::input_format_t::json,
                  /*strict=*/true, /*ignore_comments=*/false);
  return handler.TakeRoot();
}

}  // namespace tessera::config
