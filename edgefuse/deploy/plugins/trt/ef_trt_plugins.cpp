// TensorRT plugins (IPluginV3, TensorRT >= 10) over the edgefuse CUDA kernels: a thin shell — shapes,
// types, attributes and the batch loop live here, all the math in the kernels (../*.cu).
//
//   EfPillarScatter (version "1", namespace ""): ONNX node edgefuse::EfPillarScatter
//     inputs  features (B, C, P) float32, coords (B, P, 2) int32 (iy, ix), counts (B, P) int32
//     attrs   ny, nx (int)
//     output  (B, C, ny, nx) float32 — ef_pillar_scatter per batch item (channels-first features)
//
//   EfBevFusion (version "1", namespace ""): ONNX node edgefuse::EfBevFusion, M modalities, camera first
//     inputs  cam_features (B·Ncam, Cc, Hf, Wf), projection (B, Ncam, 3, 4), camera_valid (B, Ncam) float,
//             bev_1 … bev_{M-1} (B, C_m, ny, nx), valid (B, M) float,
//             proj_weight_m (Cout, C_m), proj_bias_m (Cout) for m = 0 … M-1, gate_weight (M, ΣC, k, k),
//             gate_bias (M)                                   — 3·M + 5 inputs, all float32
//     attrs   num_modalities, ny, nx, image_h, image_w, gate_kernel (int); origin_x, origin_y, cell, min_depth, gate_eps
//             (float); heights (floats)
//     output  (B, Cout, ny, nx) float32 — ef_camera_lift of the camera into the workspace, then
//             ef_gated_fusion of [lifted camera, bev_1 …], per batch item
//
// Loading: trt.get_plugin_registry().load_library("libedgefuse_trt_plugins.so") (getCreators below), or
// trtexec --dynamicPlugins=libedgefuse_trt_plugins.so.
#include <NvInferRuntime.h>

#include <cstring>
#include <string>
#include <vector>

#include "bev_fusion.h"
#include "pillar_scatter.h"

using namespace nvinfer1;

namespace {

constexpr char const* kNamespace = "";
constexpr char const* kVersion = "1";

int64_t volume(Dims const& d, int from = 0) {
    int64_t v = 1;
    for (int i = from; i < d.nbDims; ++i) v *= d.d[i];
    return v;
}

struct Fields {  // attribute lookup over a PluginFieldCollection
    PluginFieldCollection const* fc;
    PluginField const* find(char const* name) const {
        for (int i = 0; fc && i < fc->nbFields; ++i)
            if (fc->fields[i].name && std::strcmp(fc->fields[i].name, name) == 0) return &fc->fields[i];
        return nullptr;
    }
    bool get_int(char const* name, int& out) const {
        auto f = find(name);
        if (!f || f->type != PluginFieldType::kINT32 || f->length < 1) return false;
        out = *static_cast<int32_t const*>(f->data);
        return true;
    }
    bool get_float(char const* name, float& out) const {
        auto f = find(name);
        if (!f || f->type != PluginFieldType::kFLOAT32 || f->length < 1) return false;
        out = *static_cast<float const*>(f->data);
        return true;
    }
    bool get_floats(char const* name, std::vector<float>& out) const {
        auto f = find(name);
        if (!f || f->type != PluginFieldType::kFLOAT32 || f->length < 1) return false;
        auto p = static_cast<float const*>(f->data);
        out.assign(p, p + f->length);
        return true;
    }
};

// Common boilerplate of the two plugins: core + build + runtime capabilities on one object.
class PluginBase : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime {
public:
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
        switch (type) {
            case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
            case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
            case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }
    char const* getPluginVersion() const noexcept override { return kVersion; }
    char const* getPluginNamespace() const noexcept override { return kNamespace; }
    int32_t getNbOutputs() const noexcept override { return 1; }
    int32_t getOutputDataTypes(DataType* out, int32_t, DataType const*, int32_t) const noexcept override {
        out[0] = DataType::kFLOAT;
        return 0;
    }
    int32_t configurePlugin(DynamicPluginTensorDesc const*, int32_t, DynamicPluginTensorDesc const*,
                            int32_t) noexcept override {
        return 0;
    }
    int32_t onShapeChange(PluginTensorDesc const*, int32_t, PluginTensorDesc const*, int32_t) noexcept override {
        return 0;
    }
    IPluginV3* attachToContext(IPluginResourceContext*) noexcept override { return clone(); }
    PluginFieldCollection const* getFieldsToSerialize() noexcept override {
        fields_.clear();
        serialize(fields_);
        fc_.nbFields = static_cast<int32_t>(fields_.size());
        fc_.fields = fields_.data();
        return &fc_;
    }

protected:
    virtual void serialize(std::vector<PluginField>& out) = 0;
    std::vector<PluginField> fields_;
    PluginFieldCollection fc_{};
};

// ---------------------------------------------------------------- EfPillarScatter

class ScatterPlugin final : public PluginBase {
public:
    int ny = 0, nx = 0;

    char const* getPluginName() const noexcept override { return "EfPillarScatter"; }
    IPluginV3* clone() noexcept override { return new ScatterPlugin(*this); }

    int32_t getOutputShapes(DimsExprs const* in, int32_t nbIn, DimsExprs const*, int32_t, DimsExprs* out,
                            int32_t nbOut, IExprBuilder& eb) noexcept override {
        if (nbIn != 3 || nbOut != 1 || in[0].nbDims != 3) return 1;
        out[0].nbDims = 4;
        out[0].d[0] = in[0].d[0];
        out[0].d[1] = in[0].d[1];
        out[0].d[2] = eb.constant(ny);
        out[0].d[3] = eb.constant(nx);
        return 0;
    }
    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t,
                                   int32_t) noexcept override {
        auto const& d = io[pos].desc;
        DataType want = (pos == 1 || pos == 2) ? DataType::kINT32 : DataType::kFLOAT;
        return d.format == TensorFormat::kLINEAR && d.type == want;
    }
    size_t getWorkspaceSize(DynamicPluginTensorDesc const*, int32_t, DynamicPluginTensorDesc const*,
                            int32_t) const noexcept override {
        EfScatterParams p{1, 1, nx, ny, 1};
        return ef_pillar_scatter_workspace_size(&p);
    }
    int32_t enqueue(PluginTensorDesc const* inDesc, PluginTensorDesc const*, void const* const* inputs,
                    void* const* outputs, void* workspace, cudaStream_t stream) noexcept override {
        Dims const& f = inDesc[0].dims;  // (B, C, P)
        int const B = static_cast<int>(f.d[0]), C = static_cast<int>(f.d[1]), P = static_cast<int>(f.d[2]);
        EfScatterParams p{P, C, nx, ny, 1};
        size_t const ws = ef_pillar_scatter_workspace_size(&p);
        for (int b = 0; b < B; ++b) {
            int st = ef_pillar_scatter(&p, static_cast<float const*>(inputs[0]) + static_cast<size_t>(b) * C * P,
                                       static_cast<int const*>(inputs[1]) + static_cast<size_t>(b) * P * 2,
                                       static_cast<int const*>(inputs[2]) + static_cast<size_t>(b) * P,
                                       static_cast<float*>(outputs[0]) + static_cast<size_t>(b) * C * ny * nx,
                                       workspace, ws, stream);
            if (st != EF_OK) return st;
        }
        return 0;
    }

protected:
    void serialize(std::vector<PluginField>& out) override {
        out.emplace_back("ny", &ny, PluginFieldType::kINT32, 1);
        out.emplace_back("nx", &nx, PluginFieldType::kINT32, 1);
    }
};

// ---------------------------------------------------------------- EfBevFusion

class FusionPlugin final : public PluginBase {
public:
    int num_modalities = 0, ny = 0, nx = 0, image_h = 0, image_w = 0, gate_kernel = 3;
    float origin_x = 0.f, origin_y = 0.f, cell = 0.f, min_depth = 0.1f, gate_eps = 1e-3f;
    std::vector<float> heights;

    char const* getPluginName() const noexcept override { return "EfBevFusion"; }
    IPluginV3* clone() noexcept override { return new FusionPlugin(*this); }

    bool inputs_fit(int32_t nbInputs) const { return nbInputs == 3 * num_modalities + 5; }

    int32_t getOutputShapes(DimsExprs const* in, int32_t nbIn, DimsExprs const*, int32_t, DimsExprs* out,
                            int32_t nbOut, IExprBuilder& eb) noexcept override {
        int const M = num_modalities;
        if (!inputs_fit(nbIn) || nbOut != 1) return 1;
        DimsExprs const& pw0 = in[3 + (M - 1) + 1];  // proj_weight_0 (Cout, Cc)
        out[0].nbDims = 4;
        out[0].d[0] = in[1].d[0];  // B from the projection
        out[0].d[1] = pw0.d[0];
        out[0].d[2] = eb.constant(ny);
        out[0].d[3] = eb.constant(nx);
        return 0;
    }
    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t,
                                   int32_t) noexcept override {
        return io[pos].desc.format == TensorFormat::kLINEAR && io[pos].desc.type == DataType::kFLOAT;
    }
    size_t workspace(int64_t cam_channels, int M, int64_t const* chans, int64_t cout) const {
        EfGatedFusionParams g = gparams(M, chans, cout);
        size_t lifted = static_cast<size_t>(cam_channels) * ny * nx * sizeof(float);
        lifted = (lifted + 255) & ~static_cast<size_t>(255);
        return lifted + ef_gated_fusion_workspace_size(&g);
    }
    size_t getWorkspaceSize(DynamicPluginTensorDesc const* in, int32_t nbIn, DynamicPluginTensorDesc const*,
                            int32_t) const noexcept override {
        int const M = num_modalities;
        if (!inputs_fit(nbIn)) return 0;
        int64_t chans[EF_MAX_MODALITIES] = {};
        chans[0] = in[0].max.d[1];
        for (int m = 1; m < M; ++m) chans[m] = in[3 + m - 1].max.d[1];
        return workspace(chans[0], M, chans, in[3 + M].max.d[0]);
    }
    int32_t enqueue(PluginTensorDesc const* inDesc, PluginTensorDesc const*, void const* const* inputs,
                    void* const* outputs, void* workspace_ptr, cudaStream_t stream) noexcept override {
        int const M = num_modalities;
        Dims const& cf = inDesc[0].dims;   // (B·Ncam, Cc, Hf, Wf)
        Dims const& pr = inDesc[1].dims;   // (B, Ncam, 3, 4)
        int const B = static_cast<int>(pr.d[0]), ncam = static_cast<int>(pr.d[1]);
        int64_t chans[EF_MAX_MODALITIES] = {};
        chans[0] = cf.d[1];
        for (int m = 1; m < M; ++m) chans[m] = inDesc[3 + m - 1].dims.d[1];
        int const valid_idx = 3 + M - 1;
        int64_t const cout = inDesc[valid_idx + 1].dims.d[0];
        EfCameraLiftParams lp{};
        lp.nx = nx;
        lp.ny = ny;
        lp.origin_x = origin_x;
        lp.origin_y = origin_y;
        lp.cell = cell;
        lp.num_cameras = ncam;
        lp.channels = static_cast<int>(chans[0]);
        lp.feat_h = static_cast<int>(cf.d[2]);
        lp.feat_w = static_cast<int>(cf.d[3]);
        lp.image_h = image_h;
        lp.image_w = image_w;
        lp.num_heights = static_cast<int>(heights.size());
        for (size_t i = 0; i < heights.size() && i < EF_MAX_HEIGHTS; ++i) lp.heights[i] = heights[i];
        lp.min_depth = min_depth;
        EfGatedFusionParams gp = gparams(M, chans, cout);
        size_t lifted_bytes = (static_cast<size_t>(chans[0]) * ny * nx * sizeof(float) + 255) & ~static_cast<size_t>(255);
        float* lifted = static_cast<float*>(workspace_ptr);
        void* gws = static_cast<char*>(workspace_ptr) + lifted_bytes;
        size_t const gws_size = ef_gated_fusion_workspace_size(&gp);
        size_t const cell_count = static_cast<size_t>(ny) * nx;
        float const* pw[EF_MAX_MODALITIES];
        float const* pb[EF_MAX_MODALITIES];
        for (int m = 0; m < M; ++m) {
            pw[m] = static_cast<float const*>(inputs[valid_idx + 1 + 2 * m]);
            pb[m] = static_cast<float const*>(inputs[valid_idx + 2 + 2 * m]);
        }
        auto gw = static_cast<float const*>(inputs[valid_idx + 1 + 2 * M]);
        auto gb = static_cast<float const*>(inputs[valid_idx + 2 + 2 * M]);
        size_t const cam_feat = static_cast<size_t>(ncam) * volume(cf, 1);
        for (int b = 0; b < B; ++b) {
            int st = ef_camera_lift(&lp, static_cast<float const*>(inputs[0]) + b * cam_feat,
                                    static_cast<float const*>(inputs[1]) + static_cast<size_t>(b) * ncam * 12,
                                    static_cast<float const*>(inputs[2]) + static_cast<size_t>(b) * ncam, lifted,
                                    stream);
            if (st != EF_OK) return st;
            float const* feats[EF_MAX_MODALITIES];
            feats[0] = lifted;
            for (int m = 1; m < M; ++m)
                feats[m] = static_cast<float const*>(inputs[3 + m - 1]) + static_cast<size_t>(b) * chans[m] * cell_count;
            st = ef_gated_fusion(&gp, feats, static_cast<float const*>(inputs[valid_idx]) + static_cast<size_t>(b) * M,
                                 pw, pb, gw, gb,
                                 static_cast<float*>(outputs[0]) + static_cast<size_t>(b) * cout * cell_count, gws,
                                 gws_size, stream);
            if (st != EF_OK) return st;
        }
        return 0;
    }
    int32_t configurePlugin(DynamicPluginTensorDesc const*, int32_t nbIn, DynamicPluginTensorDesc const*,
                            int32_t) noexcept override {
        return inputs_fit(nbIn) ? 0 : 1;
    }
    int32_t onShapeChange(PluginTensorDesc const*, int32_t nbIn, PluginTensorDesc const*, int32_t) noexcept override {
        return inputs_fit(nbIn) ? 0 : 1;
    }

protected:
    EfGatedFusionParams gparams(int M, int64_t const* chans, int64_t cout) const {
        EfGatedFusionParams g{};
        g.nx = nx;
        g.ny = ny;
        g.num_modalities = M;
        for (int m = 0; m < M; ++m) g.channels[m] = static_cast<int>(chans[m]);
        g.out_channels = static_cast<int>(cout);
        g.gate_kernel = gate_kernel;
        g.gate_eps = gate_eps;
        return g;
    }
    void serialize(std::vector<PluginField>& out) override {
        out.emplace_back("num_modalities", &num_modalities, PluginFieldType::kINT32, 1);
        out.emplace_back("ny", &ny, PluginFieldType::kINT32, 1);
        out.emplace_back("nx", &nx, PluginFieldType::kINT32, 1);
        out.emplace_back("image_h", &image_h, PluginFieldType::kINT32, 1);
        out.emplace_back("image_w", &image_w, PluginFieldType::kINT32, 1);
        out.emplace_back("gate_kernel", &gate_kernel, PluginFieldType::kINT32, 1);
        out.emplace_back("origin_x", &origin_x, PluginFieldType::kFLOAT32, 1);
        out.emplace_back("origin_y", &origin_y, PluginFieldType::kFLOAT32, 1);
        out.emplace_back("cell", &cell, PluginFieldType::kFLOAT32, 1);
        out.emplace_back("min_depth", &min_depth, PluginFieldType::kFLOAT32, 1);
        out.emplace_back("gate_eps", &gate_eps, PluginFieldType::kFLOAT32, 1);
        out.emplace_back("heights", heights.data(), PluginFieldType::kFLOAT32, static_cast<int32_t>(heights.size()));
    }
};

// ---------------------------------------------------------------- creators

class ScatterCreator final : public IPluginCreatorV3One {
public:
    ScatterCreator() {
        attrs_ = {PluginField("ny", nullptr, PluginFieldType::kINT32, 1),
                  PluginField("nx", nullptr, PluginFieldType::kINT32, 1)};
        fc_ = {static_cast<int32_t>(attrs_.size()), attrs_.data()};
    }
    char const* getPluginName() const noexcept override { return "EfPillarScatter"; }
    char const* getPluginVersion() const noexcept override { return kVersion; }
    char const* getPluginNamespace() const noexcept override { return kNamespace; }
    PluginFieldCollection const* getFieldNames() noexcept override { return &fc_; }
    IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
        auto p = new ScatterPlugin();
        Fields f{fc};
        if (!f.get_int("ny", p->ny) || !f.get_int("nx", p->nx) || p->ny <= 0 || p->nx <= 0) {
            delete p;
            return nullptr;  // TensorRT reports "could not create plugin EfPillarScatter"
        }
        return p;
    }

private:
    std::vector<PluginField> attrs_;
    PluginFieldCollection fc_{};
};

class FusionCreator final : public IPluginCreatorV3One {
public:
    FusionCreator() {
        for (char const* n : {"num_modalities", "ny", "nx", "image_h", "image_w", "gate_kernel"})
            attrs_.emplace_back(n, nullptr, PluginFieldType::kINT32, 1);
        for (char const* n : {"origin_x", "origin_y", "cell", "min_depth", "gate_eps"})
            attrs_.emplace_back(n, nullptr, PluginFieldType::kFLOAT32, 1);
        attrs_.emplace_back("heights", nullptr, PluginFieldType::kFLOAT32, EF_MAX_HEIGHTS);
        fc_ = {static_cast<int32_t>(attrs_.size()), attrs_.data()};
    }
    char const* getPluginName() const noexcept override { return "EfBevFusion"; }
    char const* getPluginVersion() const noexcept override { return kVersion; }
    char const* getPluginNamespace() const noexcept override { return kNamespace; }
    PluginFieldCollection const* getFieldNames() noexcept override { return &fc_; }
    IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
        auto p = new FusionPlugin();
        Fields f{fc};
        bool ok = f.get_int("num_modalities", p->num_modalities) && f.get_int("ny", p->ny) && f.get_int("nx", p->nx) && f.get_int("image_h", p->image_h) &&
                  f.get_int("image_w", p->image_w) && f.get_float("origin_x", p->origin_x) &&
                  f.get_float("origin_y", p->origin_y) && f.get_float("cell", p->cell) &&
                  f.get_floats("heights", p->heights);
        f.get_int("gate_kernel", p->gate_kernel);  // optional ones keep the model's defaults
        f.get_float("min_depth", p->min_depth);
        f.get_float("gate_eps", p->gate_eps);
        ok = ok && p->num_modalities >= 1 && p->num_modalities <= EF_MAX_MODALITIES && p->ny > 0 && p->nx > 0 && p->cell > 0.f && !p->heights.empty() &&
             p->heights.size() <= EF_MAX_HEIGHTS && p->gate_kernel % 2 == 1;
        if (!ok) {
            delete p;
            return nullptr;
        }
        return p;
    }

private:
    std::vector<PluginField> attrs_;
    PluginFieldCollection fc_{};
};

ScatterCreator g_scatter_creator;
FusionCreator g_fusion_creator;
IPluginCreatorInterface* g_creators[] = {&g_scatter_creator, &g_fusion_creator};

}  // namespace

// Entry points TensorRT looks up when it loads this library (IPluginRegistry::loadLibrary, trtexec
// --dynamicPlugins).
extern "C" {
void setLoggerFinder(ILoggerFinder*) {}

IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    nbCreators = 2;
    return g_creators;
}
}
