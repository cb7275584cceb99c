-- luacheck configuration: scripts are Lua 5.4; specs run under busted.
std = "lua54"
max_line_length = 130
files["**/spec/**/*_spec.lua"] = { std = "+busted" }
exclude_files = { "build*/**" }
