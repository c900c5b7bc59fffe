#include "storage.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "error.h"

namespace pigg {

void writeFolderAtomically(const std::string& dir, const std::function<void(const std::string&)>& write) {
  namespace fs = std::filesystem;
  const fs::path target = fs::absolute(dir).lexically_normal();
  const fs::path parent = target.parent_path();
  std::error_code ignored;
  fs::create_directories(parent);
  const fs::path temp = parent / ("." + target.filename().string() + ".tmp-" + std::to_string(getpid()));
  fs::remove_all(temp, ignored);
  fs::create_directories(temp);
  try {
    write(temp.string());
  } catch (...) {
    fs::remove_all(temp, ignored);
    throw;
  }
  const fs::path old = parent / ("." + target.filename().string() + ".old-" + std::to_string(getpid()));
  if (fs::exists(target)) fs::rename(target, old);
  fs::rename(temp, target);
  fs::remove_all(old, ignored);
}

nlohmann::json readJsonFile(const std::string& path, const std::string& hint) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot read" + (hint.empty() ? std::string() : " (" + hint + ")"));
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& error) {
    throw Error(path + ": not valid JSON: " + error.what());
  }
}

void writeTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(path + ": cannot create: " + std::strerror(errno));
  out << text;
  out.flush();
  if (!out) throw Error(path + ": write failed: " + std::strerror(errno));
}

}  // namespace pigg
