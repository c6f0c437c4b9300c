#pragma once
// The cell backend behind the backend interface (backend/backend.h): what
// tesserad and `tessera cell run` use to start, adopt, stop and clean up
// cells without knowing they are cells.
//
//   cell::CellBackend cells(layout, {});
//   std::unique_ptr<backend::Instance> work = TRY(backend::Launch(cells, layout, plan));

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cell/cell.h"
#include "storage/storage.h"

namespace tessera::cell {

class CellBackend : public backend::Backend {
 public:
  // Cells get the caller's descriptors over their Unix-socket channel.
  static constexpr backend::Capabilities kCapabilities{.pass_fds = true};

  CellBackend(storage::Layout layout, CellOptions options)
      : layout_(std::move(layout)), options_(std::move(options)) {}

  std::string_view name() const override { return "cell"; }
  backend::Capabilities capabilities() const override { return kCapabilities; }
  Result<std::unique_ptr<backend::Instance>> Start(const backend::LaunchSpec& spec,
                                                   const storage::PreparedStorage& storage) override;
  Result<std::unique_ptr<backend::Instance>> Adopt(const std::string& name) override;
  Result<std::vector<std::string>> Leftovers() override;
  Status Cleanup(const std::string& name) override;

 private:
  storage::Layout layout_;
  CellOptions options_;
};

}  // namespace tessera::cell
