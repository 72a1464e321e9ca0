// Drives the edgefuse TensorRT plugins (deploy/plugins/trt/ef_trt_plugins.cpp) through the real TensorRT API the
// way the ONNX parser and the builder/runtime do, without a GPU. Compiled against TensorRT's public headers and
// linked against libnvinfer (or the lean runtime, libnvinfer_lean), it
//
//   1. loads the plugin library with getPluginRegistry()->loadLibrary() and finds each node's creator by
//      op type, plugin_version ("1") and plugin_namespace ("") — the ONNX parser's lookup — and checks that the
//      registry's creator is one the library's getCreators() entry point returns;
//   2. builds the PluginFieldCollection from the node's exported attributes exactly as the parser does
//      (INT → kINT32, FLOAT/FLOATS → kFLOAT32, INTS → kINT32, STRING → kCHAR; only fields the creator lists in
//      getFieldNames(); attributes it does not list are dropped) and checks names, types and lengths;
//   3. creates the plugin (TensorRTPhase::kBUILD) and asks what the builder asks: capabilities, getNbOutputs,
//      getOutputDataTypes, getOutputShapes (through a constant-folding IExprBuilder), supportsFormatCombination
//      for the formats of the network (and that fp16 / vectorized formats are refused), configurePlugin,
//      getWorkspaceSize, clone, getFieldsToSerialize;
//   4. re-creates the plugin from the serialized fields (TensorRTPhase::kRUNTIME) and checks the same answers,
//      attachToContext and onShapeChange. enqueue needs a GPU and is not run.
//
// Input: a spec file written by tests/test_trt_plugins_harness.py from an exported ONNX file (`edgefuse export
// --plugins`), one node per block; string tokens are "s:" + percent-encoded text:
//   source s:<onnx path>
//   node s:<node name> s:<op type> s:<plugin_version> s:<plugin_namespace>
//   attr s:<name> INT|FLOAT|INTS|FLOATS|STRING <count> <values…>       (STRING: one s: token)
//   input s:<name> FLOAT|INT32|… <rank> <dims…>
//   output s:<name> FLOAT|INT32|… <rank> <dims…>
//   end
// Output: one JSON object on stdout; exit status 0 when every check passed, 1 when one failed, 2 on bad usage.
//
//   ef_trt_harness --plugins libedgefuse_trt_plugins.so --spec nodes.txt
#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

// ================================================================ small helpers

std::string json_str(std::string const& s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': o += "\\\""; break;
            case '\\': o += "\\\\"; break;
            case '\n': o += "\\n"; break;
            case '\t': o += "\\t"; break;
            default:
                if (c < 0x20) {
                    char b[8];
                    std::snprintf(b, sizeof b, "\\u%04x", c);
                    o += b;
                } else {
                    o += static_cast<char>(c);
                }
        }
    }
    return o + "\"";
}

std::string dims_str(std::vector<int64_t> const& d) {
    std::ostringstream o;
    o << "(";
    for (size_t i = 0; i < d.size(); ++i) o << (i ? ", " : "") << d[i];
    if (d.size() == 1) o << ",";
    o << ")";
    return o.str();
}

std::string join(std::vector<std::string> const& v, char const* sep = ", ") {
    std::string o;
    for (size_t i = 0; i < v.size(); ++i) o += (i ? sep : "") + v[i];
    return o;
}

char const* field_type_name(PluginFieldType t) {
    switch (t) {
        case PluginFieldType::kFLOAT16: return "kFLOAT16";
        case PluginFieldType::kFLOAT32: return "kFLOAT32";
        case PluginFieldType::kFLOAT64: return "kFLOAT64";
        case PluginFieldType::kINT8: return "kINT8";
        case PluginFieldType::kINT16: return "kINT16";
        case PluginFieldType::kINT32: return "kINT32";
        case PluginFieldType::kCHAR: return "kCHAR";
        case PluginFieldType::kDIMS: return "kDIMS";
        case PluginFieldType::kUNKNOWN: return "kUNKNOWN";
        case PluginFieldType::kBF16: return "kBF16";
        case PluginFieldType::kINT64: return "kINT64";
        case PluginFieldType::kFP8: return "kFP8";
        case PluginFieldType::kINT4: return "kINT4";
    }
    return "k?";
}

size_t field_type_size(PluginFieldType t) {
    switch (t) {
        case PluginFieldType::kFLOAT64:
        case PluginFieldType::kINT64: return 8;
        case PluginFieldType::kFLOAT32:
        case PluginFieldType::kINT32: return 4;
        case PluginFieldType::kFLOAT16:
        case PluginFieldType::kBF16:
        case PluginFieldType::kINT16: return 2;
        case PluginFieldType::kINT8:
        case PluginFieldType::kCHAR:
        case PluginFieldType::kFP8: return 1;
        case PluginFieldType::kDIMS: return sizeof(Dims);
        default: return 0;
    }
}

struct TypeName {
    char const* name;
    DataType type;
};
TypeName const kTypes[] = {{"FLOAT", DataType::kFLOAT}, {"HALF", DataType::kHALF}, {"INT8", DataType::kINT8},
                           {"INT32", DataType::kINT32}, {"BOOL", DataType::kBOOL}, {"UINT8", DataType::kUINT8},
                           {"BF16", DataType::kBF16},   {"INT64", DataType::kINT64}};

bool parse_type(std::string const& s, DataType& t) {
    for (auto const& k : kTypes)
        if (s == k.name) {
            t = k.type;
            return true;
        }
    return false;
}

std::string type_name(DataType t) {
    for (auto const& k : kTypes)
        if (k.type == t) return k.name;
    return "DataType(" + std::to_string(static_cast<int>(t)) + ")";
}

// ================================================================ the spec (what the exporter wrote)

struct Attr {
    std::string name, kind;  // kind: the ONNX attribute type
    std::vector<int64_t> ints;
    std::vector<float> floats;
    std::string text;
    bool is_list() const { return kind == "INTS" || kind == "FLOATS"; }
    std::string value_str() const {
        std::ostringstream o;
        if (kind == "STRING") return json_str(text);
        if (is_list()) o << "[";
        if (kind == "INT" || kind == "INTS")
            for (size_t i = 0; i < ints.size(); ++i) o << (i ? ", " : "") << ints[i];
        else
            for (size_t i = 0; i < floats.size(); ++i) o << (i ? ", " : "") << floats[i];
        if (is_list()) o << "]";
        return o.str();
    }
};

struct Tensor {
    std::string name;
    DataType type{};
    std::string type_str;
    std::vector<int64_t> dims;
};

struct Node {
    std::string name, op, version, ns;
    std::vector<Attr> attrs;
    std::vector<Tensor> inputs, outputs;
    Attr const* attr(std::string const& n) const {
        for (auto const& a : attrs)
            if (a.name == n) return &a;
        return nullptr;
    }
};

struct Spec {
    std::string source;
    std::vector<Node> nodes;
};

std::string decode_token(std::string const& tok, std::string const& where) {
    if (tok.rfind("s:", 0) != 0) throw std::runtime_error(where + ": expected a string token s:…, got '" + tok + "'");
    std::string o;
    for (size_t i = 2; i < tok.size(); ++i) {
        if (tok[i] == '%' && i + 2 < tok.size()) {
            o += static_cast<char>(std::stoi(tok.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            o += tok[i];
        }
    }
    return o;
}

Spec read_spec(std::string const& path) {
    std::ifstream f(path);
    if (!f) throw std::runtime_error(path + ": cannot open the spec file");
    Spec spec;
    Node* cur = nullptr;
    std::string line;
    int lineno = 0;
    while (std::getline(f, line)) {
        ++lineno;
        std::istringstream ls(line);
        std::string kw;
        if (!(ls >> kw)) continue;
        std::string const where = path + ":" + std::to_string(lineno);
        std::string tok;
        auto next = [&](char const* what) {
            if (!(ls >> tok)) throw std::runtime_error(where + ": '" + kw + "' line: missing " + what);
            return tok;
        };
        if (kw == "source") {
            spec.source = decode_token(next("path"), where);
        } else if (kw == "node") {
            spec.nodes.emplace_back();
            cur = &spec.nodes.back();
            cur->name = decode_token(next("node name"), where);
            cur->op = decode_token(next("op type"), where);
            cur->version = decode_token(next("plugin_version"), where);
            cur->ns = decode_token(next("plugin_namespace"), where);
        } else if (!cur) {
            throw std::runtime_error(where + ": '" + kw + "' before any 'node' line");
        } else if (kw == "attr") {
            Attr a;
            a.name = decode_token(next("attribute name"), where);
            a.kind = next("attribute type");
            if (a.kind == "STRING") {
                a.text = decode_token(next("string value"), where);
            } else {
                long n = std::stol(next("value count"));
                for (long i = 0; i < n; ++i) {
                    next("value");
                    if (a.kind == "INT" || a.kind == "INTS")
                        a.ints.push_back(std::stoll(tok));
                    else if (a.kind == "FLOAT" || a.kind == "FLOATS")
                        a.floats.push_back(std::strtof(tok.c_str(), nullptr));
                    else
                        throw std::runtime_error(where + ": attribute " + a.name + ": unsupported type " + a.kind);
                }
            }
            cur->attrs.push_back(a);
        } else if (kw == "input" || kw == "output") {
            Tensor t;
            t.name = decode_token(next("tensor name"), where);
            t.type_str = next("dtype");
            if (!parse_type(t.type_str, t.type))
                throw std::runtime_error(where + ": tensor " + t.name + ": unknown dtype " + t.type_str);
            long r = std::stol(next("rank"));
            if (r < 0 || r > Dims::MAX_DIMS) throw std::runtime_error(where + ": tensor " + t.name + ": bad rank");
            for (long i = 0; i < r; ++i) t.dims.push_back(std::stoll(next("dim")));
            (kw == "input" ? cur->inputs : cur->outputs).push_back(t);
        } else if (kw == "end") {
            cur = nullptr;
        } else {
            throw std::runtime_error(where + ": unknown line '" + kw + "'");
        }
    }
    return spec;
}

// ================================================================ IExprBuilder / IDimensionExpr for the shapes

// TensorRT's expression classes are thin wrappers over apiv::V* implementations: the harness supplies its own
// implementations, folding constants (all the exported shapes are static) and keeping anything else symbolic.
class DimImpl final : public apiv::VDimensionExpr {
public:
    bool constant = false;
    int64_t value = 0;
    bool isConstant() const override { return constant; }
    int64_t getConstantValue() const override { return constant ? value : std::numeric_limits<int64_t>::min(); }
    bool isSizeTensor() const override { return false; }
};

class Dim final : public IDimensionExpr {
public:
    explicit Dim(apiv::VDimensionExpr* impl) { mImpl = impl; }
};

struct OwnedDim {
    DimImpl impl;
    Dim expr{&impl};
};

class ExprBuilder final : public IExprBuilder {
    class Impl final : public apiv::VExprBuilder {
    public:
        ExprBuilder* owner = nullptr;
        IDimensionExpr const* constant(int64_t v) override { return owner->make(true, v); }
        IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a,
                                        IDimensionExpr const& b) override {
            if (!a.isConstant() || !b.isConstant()) return owner->make(false, 0);
            int64_t x = a.getConstantValue(), y = b.getConstantValue();
            switch (op) {
                case DimensionOperation::kSUM: return owner->make(true, x + y);
                case DimensionOperation::kPROD: return owner->make(true, x * y);
                case DimensionOperation::kMAX: return owner->make(true, x > y ? x : y);
                case DimensionOperation::kMIN: return owner->make(true, x < y ? x : y);
                case DimensionOperation::kSUB: return owner->make(true, x - y);
                case DimensionOperation::kEQUAL: return owner->make(true, x == y);
                case DimensionOperation::kLESS: return owner->make(true, x < y);
                case DimensionOperation::kFLOOR_DIV:
                    if (y == 0) return nullptr;
                    return owner->make(true, (x / y) - ((x % y != 0) && ((x < 0) != (y < 0))));
                case DimensionOperation::kCEIL_DIV:
                    if (y == 0) return nullptr;
                    return owner->make(true, (x / y) + ((x % y != 0) && ((x < 0) == (y < 0))));
            }
            return nullptr;
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
            ++owner->size_tensors;
            return nullptr;  // the edgefuse plugins have no data-dependent output shapes
        }
    };
    Impl impl_;
    std::vector<std::unique_ptr<OwnedDim>> dims_;

public:
    int size_tensors = 0;
    ExprBuilder() {
        impl_.owner = this;
        mImpl = &impl_;
    }
    IDimensionExpr const* make(bool constant, int64_t v) {
        dims_.push_back(std::make_unique<OwnedDim>());
        dims_.back()->impl.constant = constant;
        dims_.back()->impl.value = v;
        return &dims_.back()->expr;
    }
    bool owns(IDimensionExpr const* e) const {
        for (auto const& d : dims_)
            if (&d->expr == e) return true;
        return false;
    }
};

// ================================================================ error recorder, resource context

class Recorder final : public IErrorRecorder {
    std::vector<std::pair<ErrorCode, std::string>> errors_;
    int32_t refs_ = 0;

public:
    int32_t getNbErrors() const noexcept override { return static_cast<int32_t>(errors_.size()); }
    ErrorCode getErrorCode(int32_t i) const noexcept override { return errors_.at(i).first; }
    ErrorDesc getErrorDesc(int32_t i) const noexcept override { return errors_.at(i).second.c_str(); }
    bool hasOverflowed() const noexcept override { return false; }
    void clear() noexcept override { errors_.clear(); }
    bool reportError(ErrorCode code, ErrorDesc desc) noexcept override {
        errors_.emplace_back(code, desc ? desc : "");
        return false;  // not fatal: the call that failed returns its own error
    }
    RefCount incRefCount() noexcept override { return ++refs_; }
    RefCount decRefCount() noexcept override { return --refs_; }
    std::vector<std::string> take() {
        std::vector<std::string> o;
        for (auto const& e : errors_) o.push_back(e.second);
        errors_.clear();
        return o;
    }
};

class ResourceContext final : public IPluginResourceContext {
public:
    IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
};

// ================================================================ results

struct Check {
    std::string step;
    bool ok;
    std::string detail;
};

struct Result {
    Node const* node = nullptr;
    std::vector<Check> checks;
    std::vector<std::pair<std::string, std::string>> not_run;
    std::vector<std::string> defaulted;  // creator fields the node does not set (the parser warns)
    std::map<std::string, std::string> info;  // JSON values
    bool ok() const {
        for (auto const& c : checks)
            if (!c.ok) return false;
        return !checks.empty();
    }
    bool add(std::string const& step, bool ok, std::string const& detail) {
        checks.push_back({step, ok, detail});
        return ok;
    }
    std::string where() const {  // what every failure message starts with
        return node->op + " (node " + node->name + ")";
    }
};

// ================================================================ field handling (the ONNX parser's loadFields)

// Owned copy of a PluginFieldCollection (names and data stay valid after the plugin is gone).
struct OwnedFields {
    std::vector<std::string> names;
    std::vector<std::vector<unsigned char>> data;
    std::vector<PluginField> fields;
    PluginFieldCollection fc{};
    void add(std::string const& name, void const* p, PluginFieldType t, int32_t length) {
        names.push_back(name);
        size_t const bytes = field_type_size(t) * static_cast<size_t>(length > 0 ? length : 0);
        auto const* b = static_cast<unsigned char const*>(p);
        data.emplace_back(b && bytes ? std::vector<unsigned char>(b, b + bytes) : std::vector<unsigned char>{});
        fields.emplace_back(nullptr, nullptr, t, length);
    }
    PluginFieldCollection const* collection() {
        for (size_t i = 0; i < fields.size(); ++i) {
            fields[i].name = names[i].c_str();
            fields[i].data = data[i].empty() ? nullptr : data[i].data();
        }
        fc.nbFields = static_cast<int32_t>(fields.size());
        fc.fields = fields.data();
        return &fc;
    }
    int find(std::string const& n) const {
        for (size_t i = 0; i < names.size(); ++i)
            if (names[i] == n) return static_cast<int>(i);
        return -1;
    }
};

// The field the ONNX parser passes for an attribute (onnx-tensorrt loadFields): type from the attribute's type.
bool attribute_field(Attr const& a, OwnedFields& out, std::string& err) {
    if (a.kind == "INT" || a.kind == "INTS") {
        std::vector<int32_t> v;
        for (int64_t x : a.ints) {
            if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max()) {
                err = "value " + std::to_string(x) + " does not fit the kINT32 the parser passes";
                return false;
            }
            v.push_back(static_cast<int32_t>(x));
        }
        out.add(a.name, v.data(), PluginFieldType::kINT32, static_cast<int32_t>(v.size()));
    } else if (a.kind == "FLOAT" || a.kind == "FLOATS") {
        out.add(a.name, a.floats.data(), PluginFieldType::kFLOAT32, static_cast<int32_t>(a.floats.size()));
    } else if (a.kind == "STRING") {
        out.add(a.name, a.text.data(), PluginFieldType::kCHAR, static_cast<int32_t>(a.text.size()));
    } else {
        err = "attribute type " + a.kind + " cannot be a plugin field";
        return false;
    }
    return true;
}

PluginFieldType attribute_field_type(Attr const& a) {
    if (a.kind == "INT" || a.kind == "INTS") return PluginFieldType::kINT32;
    if (a.kind == "FLOAT" || a.kind == "FLOATS") return PluginFieldType::kFLOAT32;
    return PluginFieldType::kCHAR;
}

std::string field_values(PluginField const& f) {
    std::ostringstream o;
    if (!f.data || f.length <= 0) return "(no data)";
    o << "[";
    for (int32_t i = 0; i < f.length && i < 16; ++i) {
        o << (i ? ", " : "");
        if (f.type == PluginFieldType::kINT32)
            o << static_cast<int32_t const*>(f.data)[i];
        else if (f.type == PluginFieldType::kFLOAT32)
            o << static_cast<float const*>(f.data)[i];
        else if (f.type == PluginFieldType::kCHAR)
            o << static_cast<char const*>(f.data)[i];
        else
            o << "?";
    }
    o << (f.length > 16 ? ", …]" : "]");
    return o.str();
}

bool same_field_data(PluginField const& a, PluginField const& b) {
    if (a.type != b.type || a.length != b.length) return false;
    size_t const n = field_type_size(a.type) * static_cast<size_t>(a.length);
    if (n == 0) return true;
    if (!a.data || !b.data) return false;
    return std::memcmp(a.data, b.data, n) == 0;
}

// ================================================================ the builder's questions

struct Answers {  // what a plugin object says about the node's tensors; compared between build and runtime
    bool have = false;
    int32_t nb_outputs = -1;
    std::vector<DataType> out_types;
    std::vector<std::vector<int64_t>> out_shapes;
    std::vector<bool> formats;  // supportsFormatCombination at each position for the network's formats
    size_t workspace = 0;
};

std::vector<DynamicPluginTensorDesc> dyn_descs(Node const& n) {
    std::vector<DynamicPluginTensorDesc> v;
    for (auto const* list : {&n.inputs, &n.outputs})
        for (auto const& t : *list) {
            DynamicPluginTensorDesc d{};
            d.desc.dims.nbDims = static_cast<int32_t>(t.dims.size());
            for (size_t i = 0; i < t.dims.size(); ++i) d.desc.dims.d[i] = t.dims[i];
            d.desc.type = t.type;
            d.desc.format = TensorFormat::kLINEAR;
            d.desc.scale = 1.f;
            d.min = d.opt = d.max = d.desc.dims;
            v.push_back(d);
        }
    return v;
}

std::vector<PluginTensorDesc> static_descs(Node const& n) {
    std::vector<PluginTensorDesc> v;
    for (auto const& d : dyn_descs(n)) v.push_back(d.desc);
    return v;
}

// Asks a build-capable plugin everything the builder asks; `phase` names the object in the messages.
Answers ask_builder(Result& r, IPluginV3OneBuild* b, std::string const& phase) {
    Node const& n = *r.node;
    Answers a;
    int32_t const nbIn = static_cast<int32_t>(n.inputs.size()), nbOut = static_cast<int32_t>(n.outputs.size());
    std::string const w = r.where() + ": " + phase + ": ";

    a.nb_outputs = b->getNbOutputs();
    if (!r.add(phase + ".getNbOutputs", a.nb_outputs == nbOut,
               a.nb_outputs == nbOut ? std::to_string(nbOut)
                                     : w + "getNbOutputs() = " + std::to_string(a.nb_outputs) + ", expected " +
                                           std::to_string(nbOut) + " (the exported node's outputs)"))
        return a;

    std::vector<DataType> in_types;
    for (auto const& t : n.inputs) in_types.push_back(t.type);
    a.out_types.assign(nbOut, static_cast<DataType>(-1));
    int32_t st = b->getOutputDataTypes(a.out_types.data(), nbOut, in_types.data(), nbIn);
    {
        std::vector<std::string> bad, got;
        for (int32_t i = 0; i < nbOut; ++i) {
            got.push_back(type_name(a.out_types[i]));
            if (a.out_types[i] != n.outputs[i].type)
                bad.push_back("output " + std::to_string(i) + " (" + n.outputs[i].name + ") is " +
                              type_name(a.out_types[i]) + ", expected " + n.outputs[i].type_str);
        }
        if (st != 0) bad.insert(bad.begin(), "returned " + std::to_string(st) + ", expected 0");
        r.add(phase + ".getOutputDataTypes", bad.empty(),
              bad.empty() ? join(got) : w + "getOutputDataTypes: " + join(bad, "; "));
    }

    ExprBuilder eb;
    std::vector<DimsExprs> ins(nbIn), outs(nbOut);
    for (int32_t i = 0; i < nbIn; ++i) {
        ins[i].nbDims = static_cast<int32_t>(n.inputs[i].dims.size());
        for (int32_t k = 0; k < ins[i].nbDims; ++k) ins[i].d[k] = eb.make(true, n.inputs[i].dims[k]);
    }
    for (auto& o : outs) {
        o.nbDims = -1;
        for (auto& d : o.d) d = nullptr;
    }
    st = b->getOutputShapes(ins.data(), nbIn, nullptr, 0, outs.data(), nbOut, eb);
    {
        std::vector<std::string> bad, got;
        if (st != 0) bad.push_back("returned " + std::to_string(st) + ", expected 0");
        for (int32_t i = 0; st == 0 && i < nbOut; ++i) {
            auto const& want = n.outputs[i].dims;
            std::vector<int64_t> dims;
            std::string const out = "output " + std::to_string(i) + " (" + n.outputs[i].name + ")";
            if (outs[i].nbDims != static_cast<int32_t>(want.size())) {
                bad.push_back(out + " has rank " + std::to_string(outs[i].nbDims) + ", expected " +
                              std::to_string(want.size()) + " (exported shape " + dims_str(want) + ")");
                continue;
            }
            for (int32_t k = 0; k < outs[i].nbDims; ++k) {
                IDimensionExpr const* e = outs[i].d[k];
                if (!e || !eb.owns(e)) {
                    bad.push_back(out + " dim " + std::to_string(k) + " is not an expression of the builder");
                    dims.push_back(-1);
                } else if (!e->isConstant()) {
                    bad.push_back(out + " dim " + std::to_string(k) + " is not constant for constant inputs");
                    dims.push_back(-1);
                } else {
                    dims.push_back(e->getConstantValue());
                }
            }
            for (size_t k = 0; k < dims.size(); ++k)
                if (dims[k] != want[k] && dims[k] != -1)
                    bad.push_back(out + " dim " + std::to_string(k) + " = " + std::to_string(dims[k]) +
                                  ", expected " + std::to_string(want[k]) + " (exported shape " + dims_str(want) +
                                  ")");
            a.out_shapes.push_back(dims);
            got.push_back(dims_str(dims));
        }
        if (eb.size_tensors) bad.push_back("declared a size tensor (no output is data dependent)");
        r.add(phase + ".getOutputShapes", bad.empty(), bad.empty() ? join(got) : w + "getOutputShapes: " + join(bad, "; "));
    }

    // supportsFormatCombination: TensorRT asks position by position; every position must accept the network's
    // (type, kLINEAR), and refuse what the kernels cannot read (fp16, a vectorized layout)
    auto io = dyn_descs(n);
    std::vector<std::string> bad;
    int32_t const nbIO = nbIn + nbOut;
    for (int32_t pos = 0; pos < nbIO; ++pos) {
        Tensor const& t = pos < nbIn ? n.inputs[pos] : n.outputs[pos - nbIn];
        std::string const what = (pos < nbIn ? "input " : "output ") + std::to_string(pos < nbIn ? pos : pos - nbIn) +
                                 " (" + t.name + ")";
        bool const yes = b->supportsFormatCombination(pos, io.data(), nbIn, nbOut);
        a.formats.push_back(yes);
        if (!yes) bad.push_back(what + ": refuses " + t.type_str + "/kLINEAR, the format the network gives it");
        auto half = io;
        half[pos].desc.type = DataType::kHALF;
        if (b->supportsFormatCombination(pos, half.data(), nbIn, nbOut))
            bad.push_back(what + ": accepts HALF, which the kernels do not read (expected only " + t.type_str + ")");
        auto vec = io;
        vec[pos].desc.format = TensorFormat::kCHW32;
        if (b->supportsFormatCombination(pos, vec.data(), nbIn, nbOut))
            bad.push_back(what + ": accepts kCHW32 (expected kLINEAR only)");
    }
    r.add(phase + ".supportsFormatCombination", bad.empty(),
          bad.empty() ? std::to_string(nbIO) + " positions: network formats accepted, HALF and kCHW32 refused"
                      : w + "supportsFormatCombination: " + join(bad, "; "));

    st = b->configurePlugin(io.data(), nbIn, io.data() + nbIn, nbOut);
    r.add(phase + ".configurePlugin", st == 0,
          st == 0 ? "0" : w + "configurePlugin returned " + std::to_string(st) + ", expected 0");

    a.workspace = b->getWorkspaceSize(io.data(), nbIn, io.data() + nbIn, nbOut);
    size_t const again = b->getWorkspaceSize(io.data(), nbIn, io.data() + nbIn, nbOut);
    r.add(phase + ".getWorkspaceSize", a.workspace == again,
          a.workspace == again ? std::to_string(a.workspace) + " bytes"
                               : w + "getWorkspaceSize is not deterministic: " + std::to_string(a.workspace) +
                                     " then " + std::to_string(again));
    a.have = true;
    return a;
}

// Capabilities and core identity of a plugin object; returns the build capability (nullptr when absent).
IPluginV3OneBuild* check_capabilities(Result& r, IPluginV3* p, std::string const& phase, bool need_build,
                                      IPluginV3OneRuntime** runtime) {
    Node const& n = *r.node;
    std::vector<std::string> bad;
    auto kind = [](IPluginCapability* c) { return std::string(c ? c->getInterfaceInfo().kind : "(null)"); };
    auto* core = p->getCapabilityInterface(PluginCapabilityType::kCORE);
    auto* build = p->getCapabilityInterface(PluginCapabilityType::kBUILD);
    auto* rt = p->getCapabilityInterface(PluginCapabilityType::kRUNTIME);
    if (kind(core) != "PLUGIN_V3ONE_CORE") bad.push_back("kCORE capability is " + kind(core));
    if (kind(rt) != "PLUGIN_V3ONE_RUNTIME") bad.push_back("kRUNTIME capability is " + kind(rt));
    if (need_build && kind(build) != "PLUGIN_V3ONE_BUILD")
        bad.push_back("kBUILD capability is " + kind(build) + " (a plugin added to a network needs one)");
    if (core && kind(core) == "PLUGIN_V3ONE_CORE") {
        auto* c = static_cast<IPluginV3OneCore*>(core);
        std::string name = c->getPluginName() ? c->getPluginName() : "(null)";
        std::string ver = c->getPluginVersion() ? c->getPluginVersion() : "(null)";
        std::string ns = c->getPluginNamespace() ? c->getPluginNamespace() : "(null)";
        if (name != n.op || ver != n.version || ns != n.ns)
            bad.push_back("identifies as " + name + "/" + ver + "/'" + ns + "', expected " + n.op + "/" + n.version +
                          "/'" + n.ns + "'");
    }
    r.add(phase + ".capabilities", bad.empty(),
          bad.empty() ? "core, " + std::string(build ? "build, " : "") + "runtime"
                      : r.where() + ": " + phase + ": " + join(bad, "; "));
    *runtime = kind(rt) == "PLUGIN_V3ONE_RUNTIME" ? static_cast<IPluginV3OneRuntime*>(rt) : nullptr;
    return kind(build) == "PLUGIN_V3ONE_BUILD" ? static_cast<IPluginV3OneBuild*>(build) : nullptr;
}

// Serialized fields of a plugin: copied, and checked against the attributes it was created with.
bool serialize(Result& r, IPluginV3OneRuntime* rt, std::string const& phase, OwnedFields& out) {
    Node const& n = *r.node;
    PluginFieldCollection const* fc = rt->getFieldsToSerialize();
    std::vector<std::string> bad, names;
    if (!fc) return r.add(phase + ".getFieldsToSerialize", false, r.where() + ": " + phase + ": returned null");
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        PluginField const& f = fc->fields[i];
        if (!f.name) {
            bad.push_back("field " + std::to_string(i) + " has no name");
            continue;
        }
        names.push_back(f.name);
        if (f.length > 0 && !f.data) bad.push_back(std::string("field '") + f.name + "' has length but no data");
        out.add(f.name, f.data, f.type, f.length);
    }
    out.collection();
    for (auto const& a : n.attrs) {  // every attribute the node set must survive serialization unchanged
        int k = out.find(a.name);
        OwnedFields want;
        std::string err;
        if (!attribute_field(a, want, err)) continue;  // reported by the field check
        want.collection();
        if (k < 0) {
            bad.push_back("attribute '" + a.name + "' = " + a.value_str() +
                          " is not serialized: the runtime plugin would not get it");
        } else if (!same_field_data(out.fields[k], want.fields[0])) {
            bad.push_back("field '" + a.name + "' serialized as " + field_type_name(out.fields[k].type) + " " +
                          field_values(out.fields[k]) + ", expected the exported " + a.kind + " " + a.value_str());
        }
    }
    return r.add(phase + ".getFieldsToSerialize", bad.empty(),
                 bad.empty() ? join(names) : r.where() + ": " + phase + ": getFieldsToSerialize: " + join(bad, "; "));
}

bool same_serialization(Result& r, OwnedFields const& a, OwnedFields const& b, std::string const& step,
                        std::string const& what) {
    std::vector<std::string> bad;
    if (a.fields.size() != b.fields.size())
        bad.push_back(std::to_string(b.fields.size()) + " fields, expected " + std::to_string(a.fields.size()));
    for (size_t i = 0; i < a.fields.size() && i < b.fields.size(); ++i) {
        if (a.names[i] != b.names[i] || !same_field_data(a.fields[i], b.fields[i]))
            bad.push_back("field " + std::to_string(i) + " '" + b.names[i] + "' = " + field_values(b.fields[i]) +
                          ", expected '" + a.names[i] + "' = " + field_values(a.fields[i]));
    }
    return r.add(step, bad.empty(), bad.empty() ? "identical" : r.where() + ": " + what + ": " + join(bad, "; "));
}

void compare_answers(Result& r, Answers const& b, Answers const& rt) {
    std::vector<std::string> bad;
    if (b.nb_outputs != rt.nb_outputs) bad.push_back("getNbOutputs differs");
    if (b.out_types != rt.out_types) bad.push_back("getOutputDataTypes differs");
    if (b.out_shapes != rt.out_shapes) bad.push_back("getOutputShapes differs");
    if (b.formats != rt.formats) bad.push_back("supportsFormatCombination differs");
    if (b.workspace != rt.workspace)
        bad.push_back("getWorkspaceSize " + std::to_string(rt.workspace) + ", at build " + std::to_string(b.workspace));
    r.add("runtime.same_answers", bad.empty(),
          bad.empty() ? "outputs, types, shapes, formats and workspace as at build"
                      : r.where() + ": the plugin re-created from its serialized fields answers differently: " +
                            join(bad, "; "));
}

// ================================================================ one node

using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);

void run_node(Result& r, IPluginRegistry* reg, std::set<IPluginCreatorInterface*> const& library_creators,
              Recorder& rec) {
    Node const& n = *r.node;
    std::string const id = n.op + "/" + n.version + "/'" + n.ns + "'";

    // ---- the parser's lookup: op type, plugin_version, plugin_namespace
    IPluginCreatorInterface* ci = reg->getCreator(n.op.c_str(), n.version.c_str(), n.ns.c_str());
    if (!r.add("registry.getCreator", ci != nullptr,
               ci ? id : r.where() + ": no creator " + id + " in the plugin registry after loadLibrary " +
                             "(the ONNX parser fails with 'Plugin not found')"))
        return;
    std::string const kind = ci->getInterfaceInfo().kind;
    std::vector<std::string> bad;
    if (!library_creators.count(ci)) bad.push_back("the registry's creator is not one getCreators() returns");
    if (kind != "PLUGIN CREATOR_V3ONE")
        bad.push_back("creator interface is '" + kind + "', expected 'PLUGIN CREATOR_V3ONE' (IPluginCreatorV3One)");
    auto* creator = static_cast<IPluginCreatorV3One*>(ci);  // what the parser does for a non-V1 creator
    if (kind == "PLUGIN CREATOR_V3ONE") {
        std::string name = creator->getPluginName(), ver = creator->getPluginVersion(),
                    ns = creator->getPluginNamespace();
        if (name != n.op || ver != n.version || ns != n.ns)
            bad.push_back("creator identifies as " + name + "/" + ver + "/'" + ns + "'");
    }
    if (!r.add("creator", bad.empty(), bad.empty() ? kind : r.where() + ": " + join(bad, "; "))) return;

    // ---- fields: getFieldNames() against the exported attributes, then the parser's collection
    PluginFieldCollection const* names = creator->getFieldNames();
    bad.clear();
    std::vector<std::string> declared;
    OwnedFields given;
    std::set<std::string> field_set;
    for (int32_t i = 0; names && i < names->nbFields; ++i) {
        PluginField const& f = names->fields[i];
        std::string const fname = f.name ? f.name : "";
        declared.push_back(fname + ":" + field_type_name(f.type) + "[" + std::to_string(f.length) + "]");
        field_set.insert(fname);
        Attr const* a = n.attr(fname);
        if (!a) {
            r.defaulted.push_back(fname);
            continue;
        }
        PluginFieldType const t = attribute_field_type(*a);
        if (t != f.type)
            bad.push_back("field '" + fname + "': the creator declares " + field_type_name(f.type) +
                          ", the exported attribute is " + a->kind + " " + a->value_str() + " (the parser passes " +
                          field_type_name(t) + ")");
        size_t const count = a->kind == "STRING" ? a->text.size() : (a->ints.size() + a->floats.size());
        if (!a->is_list() && a->kind != "STRING" && f.length != 1)
            bad.push_back("field '" + fname + "': the creator declares length " + std::to_string(f.length) +
                          ", the exported attribute is a scalar " + a->kind);
        if (a->is_list() && (count < 1 || (f.length > 0 && count > static_cast<size_t>(f.length))))
            bad.push_back("field '" + fname + "': the exported " + a->kind + " has " + std::to_string(count) +
                          " values, the creator declares 1.." + std::to_string(f.length));
        std::string err;
        if (!attribute_field(*a, given, err)) bad.push_back("attribute '" + fname + "': " + err);
    }
    for (auto const& a : n.attrs)
        if (!field_set.count(a.name) && a.name != "plugin_version" && a.name != "plugin_namespace")
            bad.push_back("attribute '" + a.name + "' (" + a.kind + " " + a.value_str() +
                          ") is not a field of the creator (fields: " + join(declared) + "): the ONNX parser drops it");
    if (!names) bad.push_back("getFieldNames() returned null");
    r.info["fields"] = json_str(join(declared));
    r.add("fields", bad.empty(),
          bad.empty() ? std::to_string(given.fields.size()) + " attributes → fields " + join(declared)
                      : r.where() + ": getFieldNames vs exported attributes: " + join(bad, "; "));

    // ---- build phase
    PluginFieldCollection const* fc = given.collection();
    std::unique_ptr<IPluginV3> built(creator->createPlugin(n.name.c_str(), fc, TensorRTPhase::kBUILD));
    {
        std::vector<std::string> fields;
        for (int32_t i = 0; i < fc->nbFields; ++i)
            fields.push_back(std::string(fc->fields[i].name) + "=" + field_values(fc->fields[i]));
        auto errs = rec.take();
        if (!r.add("build.createPlugin", built != nullptr,
                   built ? "kBUILD"
                         : r.where() + ": createPlugin(kBUILD) returned null for fields {" + join(fields) + "}" +
                               (errs.empty() ? "" : " (" + join(errs, "; ") + ")")))
            return;
    }
    IPluginV3OneRuntime* brt = nullptr;
    IPluginV3OneBuild* bb = check_capabilities(r, built.get(), "build", true, &brt);
    if (!bb || !brt) return;
    Answers const at_build = ask_builder(r, bb, "build");
    r.info["workspace_bytes"] = std::to_string(at_build.workspace);
    {
        std::unique_ptr<IPluginV3> c(built->clone());
        IPluginV3OneRuntime* crt = nullptr;
        if (r.add("build.clone", c != nullptr, c ? "ok" : r.where() + ": clone() returned null") && c) {
            check_capabilities(r, c.get(), "clone", true, &crt);
            OwnedFields a, b;
            if (crt && serialize(r, brt, "build", a)) {
                serialize(r, crt, "clone", b);
                same_serialization(r, a, b, "clone.same_fields", "clone() serializes differently");
            }
        }
    }

    // ---- serialize, re-create for the runtime
    OwnedFields ser;
    if (!serialize(r, brt, "serialize", ser)) return;
    std::unique_ptr<IPluginV3> rtp(creator->createPlugin(n.name.c_str(), ser.collection(), TensorRTPhase::kRUNTIME));
    {
        auto errs = rec.take();
        if (!r.add("runtime.createPlugin", rtp != nullptr,
                   rtp ? "kRUNTIME from the serialized fields"
                       : r.where() + ": createPlugin(kRUNTIME) returned null for its own serialized fields {" +
                             join(ser.names) + "}" + (errs.empty() ? "" : " (" + join(errs, "; ") + ")")))
            return;
    }
    IPluginV3OneRuntime* rrt = nullptr;
    IPluginV3OneBuild* rb = check_capabilities(r, rtp.get(), "runtime", false, &rrt);
    if (!rrt) return;
    OwnedFields ser2;
    if (serialize(r, rrt, "runtime", ser2))
        same_serialization(r, ser, ser2, "runtime.same_fields", "the re-created plugin serializes differently");
    if (rb) {
        Answers const at_runtime = ask_builder(r, rb, "runtime");
        if (at_runtime.have && at_build.have) compare_answers(r, at_build, at_runtime);
    }
    ResourceContext ctx;
    std::unique_ptr<IPluginV3> attached(rrt->attachToContext(&ctx));
    if (!r.add("runtime.attachToContext", attached != nullptr,
               attached ? "ok" : r.where() + ": attachToContext returned null"))
        return;
    IPluginV3OneRuntime* art = nullptr;
    check_capabilities(r, attached.get(), "attached", false, &art);
    if (art) {
        auto descs = static_descs(n);
        int32_t const nbIn = static_cast<int32_t>(n.inputs.size());
        int32_t st = art->onShapeChange(descs.data(), nbIn, descs.data() + nbIn, static_cast<int32_t>(n.outputs.size()));
        r.add("runtime.onShapeChange", st == 0,
              st == 0 ? "0" : r.where() + ": onShapeChange returned " + std::to_string(st) + " for the exported shapes");
    }
    r.not_run.emplace_back("runtime.enqueue", "needs a GPU (device buffers and a CUDA stream); run "
                                              "tests/test_kernels_gpu.py and trtexec on a GPU machine");
}

}  // namespace

int main(int argc, char** argv) {
    std::string lib, spec_path;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        if (k == "--plugins") lib = argv[i + 1];
        else if (k == "--spec") spec_path = argv[i + 1];
    }
    if (lib.empty() || spec_path.empty()) {
        std::cerr << "usage: " << argv[0] << " --plugins libedgefuse_trt_plugins.so --spec nodes.txt\n";
        return 2;
    }
    Spec spec;
    try {
        spec = read_spec(spec_path);
    } catch (std::exception const& e) {
        std::cerr << e.what() << "\n";
        return 2;
    }
    if (spec.nodes.empty()) {
        std::cerr << spec_path << ": no plugin nodes\n";
        return 2;
    }

    std::vector<std::string> errors;
    int32_t const lib_version = getInferLibVersion();
    int32_t const lib_major = lib_version / 10000;  // 10.16.1 → 101601 (major·10000 + minor·100 + patch)
    if (lib_major != NV_TENSORRT_MAJOR)
        errors.push_back("the TensorRT library is version " + std::to_string(lib_version) + ", the headers " +
                         std::to_string(NV_TENSORRT_MAJOR) + ".x: plugins are only ABI compatible within a major version");

    IPluginRegistry* reg = getPluginRegistry();
    Recorder rec;
    reg->setErrorRecorder(&rec);
    void* handle = reg->loadLibrary(lib.c_str());
    std::set<IPluginCreatorInterface*> library_creators;
    std::vector<std::string> creator_names;
    if (!handle) {
        auto errs = rec.take();
        errors.push_back(lib + ": IPluginRegistry::loadLibrary failed" + (errs.empty() ? "" : ": " + join(errs, "; ")));
    } else {
        void* dl = dlopen(lib.c_str(), RTLD_NOW | RTLD_NOLOAD);
        auto get = dl ? reinterpret_cast<GetCreators>(dlsym(dl, "getCreators")) : nullptr;
        if (!get) {
            errors.push_back(lib + ": no getCreators entry point (IPluginCreatorInterface* const* getCreators(int32_t&))");
        } else {
            int32_t nb = 0;
            IPluginCreatorInterface* const* list = get(nb);
            for (int32_t i = 0; list && i < nb; ++i) {
                library_creators.insert(list[i]);
                auto info = list[i]->getInterfaceInfo();
                std::string nm = "?";
                if (std::string(info.kind) == "PLUGIN CREATOR_V3ONE") {
                    auto* c = static_cast<IPluginCreatorV3One*>(list[i]);
                    nm = std::string(c->getPluginName()) + "/" + c->getPluginVersion() + "/'" + c->getPluginNamespace() + "'";
                }
                creator_names.push_back(nm + " (" + info.kind + ")");
            }
        }
        if (dl) dlclose(dl);
    }

    std::vector<Result> results(spec.nodes.size());
    for (size_t i = 0; i < spec.nodes.size(); ++i) {
        results[i].node = &spec.nodes[i];
        if (handle) run_node(results[i], reg, library_creators, rec);
    }
    std::vector<std::string> late = rec.take();
    if (handle) reg->deregisterLibrary(handle);
    reg->setErrorRecorder(nullptr);

    bool ok = errors.empty();
    std::string const headers = std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
                                std::to_string(NV_TENSORRT_PATCH);
    std::ostringstream o;
    o << "{\n  \"source\": " << json_str(spec.source) << ",\n  \"plugin_library\": " << json_str(lib)
      << ",\n  \"tensorrt_headers\": " << json_str(headers)
      << ",\n  \"tensorrt_library\": " << lib_version << ",\n  \"library_creators\": [";
    for (size_t i = 0; i < creator_names.size(); ++i) o << (i ? ", " : "") << json_str(creator_names[i]);
    o << "],\n  \"registry_messages\": [";
    for (size_t i = 0; i < late.size(); ++i) o << (i ? ", " : "") << json_str(late[i]);
    o << "],\n  \"errors\": [";
    for (size_t i = 0; i < errors.size(); ++i) o << (i ? ", " : "") << json_str(errors[i]);
    o << "],\n  \"plugins\": [";
    for (size_t i = 0; i < results.size(); ++i) {
        Result const& r = results[i];
        ok = ok && r.ok();
        o << (i ? "," : "") << "\n    {\"node\": " << json_str(r.node->name) << ", \"op_type\": " << json_str(r.node->op)
          << ", \"version\": " << json_str(r.node->version) << ", \"namespace\": " << json_str(r.node->ns)
          << ", \"ok\": " << (r.ok() ? "true" : "false");
        for (auto const& kv : r.info) o << ", " << json_str(kv.first) << ": " << kv.second;
        o << ",\n     \"defaulted_fields\": [";
        for (size_t k = 0; k < r.defaulted.size(); ++k) o << (k ? ", " : "") << json_str(r.defaulted[k]);
        o << "],\n     \"checks\": [";
        for (size_t k = 0; k < r.checks.size(); ++k)
            o << (k ? "," : "") << "\n       {\"step\": " << json_str(r.checks[k].step)
              << ", \"ok\": " << (r.checks[k].ok ? "true" : "false") << ", \"detail\": " << json_str(r.checks[k].detail) << "}";
        o << "],\n     \"not_run\": [";
        for (size_t k = 0; k < r.not_run.size(); ++k)
            o << (k ? ", " : "") << "{\"step\": " << json_str(r.not_run[k].first)
              << ", \"reason\": " << json_str(r.not_run[k].second) << "}";
        o << "]}";
    }
    o << "\n  ],\n  \"ok\": " << (ok ? "true" : "false") << "\n}\n";
    std::cout << o.str();
    return ok ? 0 : 1;
}
