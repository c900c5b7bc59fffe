// Atomic folder and file writes: results are written next to their destination and renamed into place, so an
// interrupted run never leaves a half-written checkpoint.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace pigg {

// Calls write(tempDir), then replaces dir with tempDir in one rename (the old folder is removed afterwards).
void writeFolderAtomically(const std::string& dir, const std::function<void(const std::string& tempDir)>& write);

void writeTextFile(const std::string& path, const std::string& text);

// Parses a JSON file; an unreadable file or invalid JSON is an Error naming the file (and `hint`: what the
// folder should be).
nlohmann::json readJsonFile(const std::string& path, const std::string& hint = "");

}  // namespace pigg
