-- Runs the Argo CD health checks in this folder against the samples in samples/.
--
--   lua5.4 docs/argocd/test.lua [DIR]     (also runs under lua5.1, Argo CD's dialect)
--
-- Each sample is a JSON file: {"description": ..., "expect": {"status": ...,
-- "message": <optional substring>}, "object": <the custom resource>}. The script used is
-- health-<lowercased kind>.lua. The checks run in an environment holding only what Argo
-- CD's sandbox offers (no io, no os), with `obj` set to a fresh copy of the object.
-- Prints one line per sample and "N passed, N failed" last; exits 1 on any failure.

local dir = arg[1] or string.match(arg[0], "^(.*)/[^/]*$") or "."

-- A small JSON decoder: objects become tables, arrays become sequences, null becomes nil.
local decode

local function skip(s, i)
  local _, e = string.find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local function fail(s, i, what)
  error(string.format("JSON: %s at byte %d near %q", what, i, string.sub(s, i, i + 10)), 0)
end

local escapes = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function utf8char(cp)
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
  end
  return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local function decodeString(s, i)
  local parts = {}
  local j = i + 1
  while true do
    local c = string.sub(s, j, j)
    if c == "" then
      fail(s, i, "unterminated string")
    elseif c == '"' then
      return table.concat(parts), j + 1
    elseif c == "\\" then
      local e = string.sub(s, j + 1, j + 1)
      if e == "u" then
        local hex = string.sub(s, j + 2, j + 5)
        if not string.find(hex, "^%x%x%x%x$") then
          fail(s, j, "bad unicode escape")
        end
        parts[#parts + 1] = utf8char(tonumber(hex, 16))
        j = j + 6
      else
        parts[#parts + 1] = escapes[e] or e
        j = j + 2
      end
    else
      parts[#parts + 1] = c
      j = j + 1
    end
  end
end

local function decodeNumber(s, i)
  local text = string.match(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  local n = text and tonumber(text)
  if n == nil then
    fail(s, i, "bad number")
  end
  return n, i + string.len(text)
end

local function decodeArray(s, i)
  local out, n = {}, 0
  i = skip(s, i + 1)
  if string.sub(s, i, i) == "]" then
    return out, i + 1
  end
  while true do
    local v
    v, i = decode(s, i)
    n = n + 1
    out[n] = v
    i = skip(s, i)
    local c = string.sub(s, i, i)
    if c == "]" then
      return out, i + 1
    elseif c ~= "," then
      fail(s, i, "expected , or ]")
    end
    i = skip(s, i + 1)
  end
end

local function decodeObject(s, i)
  local out = {}
  i = skip(s, i + 1)
  if string.sub(s, i, i) == "}" then
    return out, i + 1
  end
  while true do
    if string.sub(s, i, i) ~= '"' then
      fail(s, i, "expected a key")
    end
    local k, v
    k, i = decodeString(s, i)
    i = skip(s, i)
    if string.sub(s, i, i) ~= ":" then
      fail(s, i, "expected :")
    end
    v, i = decode(s, skip(s, i + 1))
    out[k] = v
    i = skip(s, i)
    local c = string.sub(s, i, i)
    if c == "}" then
      return out, i + 1
    elseif c ~= "," then
      fail(s, i, "expected , or }")
    end
    i = skip(s, i + 1)
  end
end

local literals = { ["true"] = true, ["false"] = false }

decode = function(s, i)
  i = skip(s, i)
  local c = string.sub(s, i, i)
  if c == "{" then
    return decodeObject(s, i)
  elseif c == "[" then
    return decodeArray(s, i)
  elseif c == '"' then
    return decodeString(s, i)
  elseif c == "-" or string.find(c, "%d") then
    return decodeNumber(s, i)
  end
  for word, value in pairs(literals) do
    if string.sub(s, i, i + string.len(word) - 1) == word then
      return value, i + string.len(word)
    end
  end
  if string.sub(s, i, i + 3) == "null" then
    return nil, i + 4
  end
  fail(s, i, "unexpected character")
end

local function decodeDocument(s)
  local v, i = decode(s, 1)
  if skip(s, i) <= string.len(s) then
    fail(s, i, "trailing characters")
  end
  return v
end

local function readFile(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

local function copy(v)
  if type(v) ~= "table" then
    return v
  end
  local out = {}
  for k, x in pairs(v) do
    out[k] = copy(x)
  end
  return out
end

-- What Argo CD's Lua sandbox offers a health script.
local function sandbox(object)
  return {
    obj = object,
    ipairs = ipairs, pairs = pairs, next = next, type = type, select = select,
    tostring = tostring, tonumber = tonumber, error = error, pcall = pcall,
    string = string, table = table, math = math,
  }
end

local function compile(src, name, env)
  if setfenv ~= nil then -- Lua 5.1
    local fn, err = loadstring(src, name)
    if fn ~= nil then
      setfenv(fn, env)
    end
    return fn, err
  end
  return load(src, name, "t", env)
end

local function runScript(path, object)
  local fn, err = compile(readFile(path), "@" .. path, sandbox(object))
  if fn == nil then
    return nil, err
  end
  local ok, result = pcall(fn)
  if not ok then
    return nil, result
  end
  if type(result) ~= "table" or type(result.status) ~= "string" then
    return nil, "script did not return {status=..., message=...}"
  end
  return result
end

local function listSamples()
  local files = {}
  local p = assert(io.popen('ls -1 "' .. dir .. '/samples"'))
  for name in p:lines() do
    if string.find(name, "%.json$") then
      files[#files + 1] = name
    end
  end
  p:close()
  table.sort(files)
  return files
end

local passed, failed = 0, 0
local seen = {}
for _, name in ipairs(listSamples()) do
  local okDecode, sample = pcall(decodeDocument, readFile(dir .. "/samples/" .. name))
  local problem
  local result
  if not okDecode then
    problem = sample
  else
    local kind = string.lower(sample.object.kind)
    seen[kind] = (seen[kind] or 0) + 1
    local err
    result, err = runScript(dir .. "/health-" .. kind .. ".lua", copy(sample.object))
    if result == nil then
      problem = err
    elseif result.status ~= sample.expect.status then
      problem = "got " .. result.status .. " (" .. tostring(result.message) .. "), want "
        .. sample.expect.status
    elseif sample.expect.message ~= nil
      and not string.find(tostring(result.message), sample.expect.message, 1, true) then
      problem = "message " .. string.format("%q", tostring(result.message))
        .. " lacks " .. string.format("%q", sample.expect.message)
    end
  end
  if problem == nil then
    passed = passed + 1
    local oneLine = string.gsub(tostring(result.message), "%s+", " ")
    print("ok - " .. name .. ": " .. result.status .. " - " .. oneLine)
  else
    failed = failed + 1
    print("FAIL - " .. name .. ": " .. tostring(problem))
  end
end

for _, kind in ipairs({ "awsaccount", "accessgroup", "productionaccessgrant", "privatelinkroute" }) do
  if seen[kind] == nil then
    failed = failed + 1
    print("FAIL - no sample for health-" .. kind .. ".lua")
  end
end

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then
  os.exit(1)
end
