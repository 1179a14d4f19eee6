// The shared top of every tool: parsing and the one-line error contract.
#include "tools/cli.hpp"

#include "core/error.hpp"
#include "core/text.hpp"

namespace llmlab {

int run_cli(CLI::App& app, const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
            const std::function<int()>& body) {
  const std::string prefix = app.get_name() + ": error: ";
  // One write per line: under mpirun several ranks share the terminal, and an unbuffered
  // stream would interleave the pieces of their lines.
  auto report = [&](const char* what) { err << (prefix + single_line(what) + "\n") << std::flush; };
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them reversed
  try {
    app.parse(reversed);
    return body();
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    report(e.what());
    return static_cast<int>(ExitCode::bad_input);
  } catch (const Error& e) {
    report(e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    report(e.what());
    return static_cast<int>(ExitCode::failure);
  }
}

}  // namespace llmlab
