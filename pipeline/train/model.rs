//! A small decoder-only transformer whose feed-forward layers are Mixture-of-Experts.
//!
//! The shape follows DeepSeek-V3's MoE block at toy scale: pre-norm RMSNorm, rotary
//! positions, causal multi-head attention that never crosses a document boundary, and a
//! routed MoE feed-forward (top-k of `n_experts` SwiGLU experts, gates renormalised over
//! the chosen k) next to optional always-on shared experts, with a Switch-style
//! load-balancing auxiliary loss `aux = E · Σ_e f_e · P_e` (f_e: share of routed slots,
//! P_e: mean router probability, both over real tokens).
//!
//! **Why written from primitives.** candle-nn has no trainable MoE on CPU (`moe_gemm` is
//! CUDA-only), and its fused `softmax_last_dim`, `rms_norm` and `sdpa` do not
//! backpropagate. Every op here (matmul, index_select, gather, narrow, cat, exp, sqrt, …)
//! has a backward pass in candle-core; `candle_nn::ops::{softmax, log_softmax}` are built
//! from such ops.
//!
//! **Dispatch.** Routing decisions (top-k) are made on the host from the router
//! probabilities; each expert gathers its tokens with `index_select`, runs one batched
//! SwiGLU, and the outputs are gathered back per (token, slot) and weighted by the
//! differentiable gates. With `capacity_factor` unset the dispatch is dropless; with it
//! set, an expert takes at most `ceil(capacity_factor · slots / E)` slots in token order
//! and the rest contribute zero (counted as dropped).
//!
//! **Determinism.** Weights are initialised from splitmix64 with the config's seed (not
//! candle's unseeded RNG); CPU kernels are deterministic, so a resumed run reproduces an
//! uninterrupted one bit for bit.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};

use crate::feed::shuffle::SplitMix64;
use crate::feed::{Batch, IGNORE};

/// Model size and MoE settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size; every token id must be below it. Default 151936 (Qwen2's padded vocab).
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Hidden width. Default 64.
    #[serde(default = "d_model")]
    pub d_model: usize,
    /// Transformer blocks. Default 2.
    #[serde(default = "d_layers")]
    pub n_layers: usize,
    /// Attention heads (`d_model` must divide evenly, head size even for rotary). Default 4.
    #[serde(default = "d_heads")]
    pub n_heads: usize,
    /// Routed experts per MoE layer. Default 8.
    #[serde(default = "d_experts")]
    pub n_experts: usize,
    /// Experts chosen per token. Default 2.
    #[serde(default = "d_topk")]
    pub top_k: usize,
    /// Hidden width of each expert's SwiGLU. Default 128.
    #[serde(default = "d_expert")]
    pub d_expert: usize,
    /// Always-on shared experts (DeepSeek-style), same width as routed ones. Default 1.
    #[serde(default = "d_shared")]
    pub n_shared_experts: usize,
    /// Expert capacity as a multiple of the even share of slots; unset = dropless. Default unset.
    #[serde(default)]
    pub capacity_factor: Option<f64>,
    /// Weight of the load-balancing auxiliary loss. Default 0.01.
    #[serde(default = "d_aux")]
    pub aux_loss_weight: f64,
    /// Rotary base. Default 10000.
    #[serde(default = "d_theta")]
    pub rope_theta: f64,
    /// RMSNorm epsilon. Default 1e-6.
    #[serde(default = "d_eps")]
    pub norm_eps: f64,
    /// Standard deviation of the initial weights. Default 0.02.
    #[serde(default = "d_std")]
    pub init_std: f64,
    /// Seed of the weight initialisation. Default 0.
    #[serde(default)]
    pub init_seed: u64,
}

fn d_vocab() -> usize {
    151_936
}
fn d_model() -> usize {
    64
}
fn d_layers() -> usize {
    2
}
fn d_heads() -> usize {
    4
}
fn d_experts() -> usize {
    8
}
fn d_topk() -> usize {
    2
}
fn d_expert() -> usize {
    128
}
fn d_shared() -> usize {
    1
}
fn d_aux() -> f64 {
    0.01
}
fn d_theta() -> f64 {
    10_000.0
}
fn d_eps() -> f64 {
    1e-6
}
fn d_std() -> f64 {
    0.02
}

impl ModelConfig {
    /// All problems with the sizes, at once.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_experts", self.n_experts),
            ("top_k", self.top_k),
            ("d_expert", self.d_expert),
        ] {
            if v == 0 {
                p.push(format!("model.{name} must be at least 1"));
            }
        }
        if self.n_heads > 0
            && (self.d_model % self.n_heads != 0 || (self.d_model / self.n_heads) % 2 != 0)
        {
            p.push(format!(
                "model.d_model {} must split into {} heads of even size (rotary)",
                self.d_model, self.n_heads
            ));
        }
        if self.top_k > self.n_experts {
            p.push(format!(
                "model.top_k {} exceeds n_experts {}",
                self.top_k, self.n_experts
            ));
        }
        if self.capacity_factor.is_some_and(|c| c.is_nan() || c <= 0.0) {
            p.push("model.capacity_factor must be positive".to_string());
        }
        p
    }
}

/// Result of one forward pass.
pub struct Forward {
    /// Total loss (cross-entropy + weighted auxiliary loss), a scalar.
    pub loss: Tensor,
    /// Mean next-token cross-entropy over labelled positions.
    pub ce: f32,
    /// Mean auxiliary load-balancing loss over MoE layers (unweighted).
    pub aux: f32,
    /// Per layer, per expert: share of the routed (token, slot) pairs of real tokens.
    /// Each layer's shares sum to 1.
    pub expert_share: Vec<Vec<f64>>,
    /// Routed slots dropped by the capacity limit (0 when dropless).
    pub dropped_slots: u64,
    /// Labelled positions (tokens the loss is over).
    pub label_tokens: usize,
}

struct Expert {
    w1: Var,
    w3: Var,
    w2: Var,
}

struct Layer {
    attn_norm: Var,
    wq: Var,
    wk: Var,
    wv: Var,
    wo: Var,
    moe_norm: Var,
    router: Var,
    experts: Vec<Expert>,
    shared: Vec<Expert>,
}

/// The model: parameters as named candle `Var`s.
pub struct Model {
    /// Its configuration.
    pub cfg: ModelConfig,
    embed: Var,
    layers: Vec<Layer>,
    final_norm: Var,
    names: Vec<(String, Var)>,
    dev: Device,
}

type CResult<T> = candle_core::Result<T>;

struct Init {
    rng: SplitMix64,
    dev: Device,
}

impl Init {
    fn normal(&mut self, shape: (usize, usize), std: f64) -> CResult<Var> {
        let n = shape.0 * shape.1;
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            // Box–Muller on two 53-bit uniforms in (0, 1].
            let u1 = ((self.rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            let u2 = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let th = 2.0 * std::f64::consts::PI * u2;
            v.push((r * th.cos()) as f32);
            if v.len() < n {
                v.push((r * th.sin()) as f32);
            }
        }
        Var::from_tensor(&Tensor::from_vec(v, shape, &self.dev)?)
    }
    fn ones(&self, n: usize) -> CResult<Var> {
        Var::from_tensor(&Tensor::ones(n, DType::F32, &self.dev)?)
    }
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> CResult<Tensor> {
    // From primitives: candle's fused rms_norm has no backward pass.
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(w)
}

fn swiglu(x: &Tensor, e: &Expert) -> CResult<Tensor> {
    let a = x.matmul(e.w1.as_tensor())?.silu()?;
    let b = x.matmul(e.w3.as_tensor())?;
    (a * b)?.matmul(e.w2.as_tensor())
}

impl Model {
    /// A freshly initialised model on `dev`.
    pub fn new(cfg: &ModelConfig, dev: &Device) -> crate::Result<Model> {
        let p = cfg.problems();
        if !p.is_empty() {
            return Err(crate::Error::Config(p));
        }
        Self::build(cfg, dev).map_err(cerr)
    }

    fn build(cfg: &ModelConfig, dev: &Device) -> CResult<Model> {
        let mut init = Init {
            rng: SplitMix64::new(crate::feed::shuffle::mix(cfg.init_seed ^ 0x6D6F_6465_6C00)),
            dev: dev.clone(),
        };
        let (d, f, std) = (cfg.d_model, cfg.d_expert, cfg.init_std);
        // Residual-branch outputs start smaller (GPT-2), so deep sums stay O(1).
        let out_std = std / (2.0 * cfg.n_layers as f64).sqrt();
        let mut names: Vec<(String, Var)> = Vec::new();
        let embed = init.normal((cfg.vocab_size, d), std)?;
        names.push(("embed".into(), embed.clone()));
        let expert =
            |init: &mut Init, names: &mut Vec<(String, Var)>, prefix: String| -> CResult<Expert> {
                let e = Expert {
                    w1: init.normal((d, f), std)?,
                    w3: init.normal((d, f), std)?,
                    w2: init.normal((f, d), out_std)?,
                };
                names.push((format!("{prefix}.w1"), e.w1.clone()));
                names.push((format!("{prefix}.w3"), e.w3.clone()));
                names.push((format!("{prefix}.w2"), e.w2.clone()));
                Ok(e)
            };
        let mut layers = Vec::new();
        for i in 0..cfg.n_layers {
            let l = Layer {
                attn_norm: init.ones(d)?,
                wq: init.normal((d, d), std)?,
                wk: init.normal((d, d), std)?,
                wv: init.normal((d, d), std)?,
                wo: init.normal((d, d), out_std)?,
                moe_norm: init.ones(d)?,
                router: init.normal((d, cfg.n_experts), std)?,
                experts: Vec::new(),
                shared: Vec::new(),
            };
            for (n, v) in [
                ("attn_norm", &l.attn_norm),
                ("wq", &l.wq),
                ("wk", &l.wk),
                ("wv", &l.wv),
                ("wo", &l.wo),
                ("moe_norm", &l.moe_norm),
                ("router", &l.router),
            ] {
                names.push((format!("layers.{i}.{n}"), v.clone()));
            }
            let mut l = l;
            for e in 0..cfg.n_experts {
                l.experts.push(expert(
                    &mut init,
                    &mut names,
                    format!("layers.{i}.experts.{e}"),
                )?);
            }
            for s in 0..cfg.n_shared_experts {
                l.shared.push(expert(
                    &mut init,
                    &mut names,
                    format!("layers.{i}.shared.{s}"),
                )?);
            }
            layers.push(l);
        }
        let final_norm = init.ones(d)?;
        names.push(("final_norm".into(), final_norm.clone()));
        Ok(Model {
            cfg: cfg.clone(),
            embed,
            layers,
            final_norm,
            names,
            dev: dev.clone(),
        })
    }

    /// Parameters by name, in a fixed order.
    pub fn params(&self) -> &[(String, Var)] {
        &self.names
    }

    /// Number of scalar parameters.
    pub fn n_params(&self) -> usize {
        self.names.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Forward pass and losses over one loader batch.
    pub fn forward(&self, batch: &Batch) -> crate::Result<Forward> {
        if let Some(&bad) = batch
            .input_ids
            .iter()
            .find(|&&t| t as usize >= self.cfg.vocab_size)
        {
            return Err(crate::Error::msg(format!(
                "token id {bad} is outside the model's vocabulary (vocab_size {}); set model.vocab_size to the tokenizer's size",
                self.cfg.vocab_size
            )));
        }
        self.forward_c(batch).map_err(cerr)
    }

    fn forward_c(&self, batch: &Batch) -> CResult<Forward> {
        let cfg = &self.cfg;
        let (b, t, d) = (batch.batch_size, batch.seq_len, cfg.d_model);
        let n = b * t;
        let h = cfg.n_heads;
        let hd = d / h;
        let ids = Tensor::from_vec(batch.input_ids.clone(), n, &self.dev)?;
        let mut x = self.embed.as_tensor().index_select(&ids, 0)?; // [n, d]

        // Rotary tables from the loader's per-document positions: [b, 1, t, hd/2].
        let half = hd / 2;
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for &p in &batch.position_ids {
            for i in 0..half {
                let inv = cfg.rope_theta.powf(-2.0 * i as f64 / hd as f64);
                let a = p as f64 * inv;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        let cos = Tensor::from_vec(cos, (b, 1, t, half), &self.dev)?;
        let sin = Tensor::from_vec(sin, (b, 1, t, half), &self.dev)?;
        // Causal mask that also blocks attention across document segments: [b, 1, t, t].
        let mut mask = vec![0f32; b * t * t];
        for bi in 0..b {
            let mut seg = vec![0u32; t];
            let mut s = 0u32;
            for (i, sg) in seg.iter_mut().enumerate() {
                if batch.doc_start[bi * t + i] == 1 && i > 0 {
                    s += 1;
                }
                *sg = s;
            }
            for i in 0..t {
                for j in 0..t {
                    if j > i || seg[j] != seg[i] {
                        mask[(bi * t + i) * t + j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, t), &self.dev)?;
        // Real tokens (those with a label) drive the routing statistics and aux loss.
        let real: Vec<bool> = batch.labels.iter().map(|&l| l != IGNORE).collect();
        let n_real = real.iter().filter(|r| **r).count().max(1);
        let real_row = Tensor::from_vec(
            real.iter()
                .map(|&r| if r { 1f32 / n_real as f32 } else { 0.0 })
                .collect::<Vec<_>>(),
            (1, n),
            &self.dev,
        )?;

        let rope = |x: &Tensor| -> CResult<Tensor> {
            let x1 = x.narrow(3, 0, half)?;
            let x2 = x.narrow(3, half, half)?;
            let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
            let c = (x1.broadcast_mul(&sin)? + x2.broadcast_mul(&cos)?)?;
            Tensor::cat(&[a, c], 3)
        };
        let heads = |x: Tensor| -> CResult<Tensor> {
            x.reshape((b, t, h, hd))?.transpose(1, 2)?.contiguous()
        };

        let mut aux_total: Option<Tensor> = None;
        let mut aux_sum = 0f32;
        let mut shares = Vec::new();
        let mut dropped = 0u64;
        let scale = 1.0 / (hd as f64).sqrt();
        for l in &self.layers {
            // Attention block.
            let xn = rms_norm(&x, l.attn_norm.as_tensor(), cfg.norm_eps)?;
            let q = rope(&heads(xn.matmul(l.wq.as_tensor())?)?)?;
            let k = rope(&heads(xn.matmul(l.wk.as_tensor())?)?)?;
            let v = heads(xn.matmul(l.wv.as_tensor())?)?;
            let att = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let o = att
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n, d))?;
            x = (x + o.matmul(l.wo.as_tensor())?)?;

            // MoE block.
            let xn = rms_norm(&x, l.moe_norm.as_tensor(), cfg.norm_eps)?;
            let (y, aux, share, drop) = self.moe(l, &xn, &real, &real_row)?;
            dropped += drop;
            aux_sum += aux.to_scalar::<f32>()?;
            aux_total = Some(match aux_total {
                None => aux,
                Some(a) => (a + aux)?,
            });
            shares.push(share);
            x = (x + y)?;
        }
        let x = rms_norm(&x, self.final_norm.as_tensor(), cfg.norm_eps)?;

        // Cross-entropy only over labelled positions (tied output embedding).
        let pos: Vec<u32> = (0..n as u32).filter(|&i| real[i as usize]).collect();
        let targets: Vec<u32> = batch
            .labels
            .iter()
            .filter(|&&l| l != IGNORE)
            .map(|&l| l as u32)
            .collect();
        let m = pos.len();
        let (ce_t, ce) = if m == 0 {
            let z = Tensor::zeros((), DType::F32, &self.dev)?;
            (z, 0.0)
        } else {
            let pos = Tensor::from_vec(pos, m, &self.dev)?;
            let hs = x.index_select(&pos, 0)?;
            lm_head_ce(&hs, self.embed.as_tensor(), &targets, LM_HEAD_CHUNK)?
        };
        let n_layers = self.layers.len().max(1);
        let loss = match aux_total {
            Some(a) => (ce_t + (a * (cfg.aux_loss_weight / n_layers as f64))?)?,
            None => ce_t,
        };
        Ok(Forward {
            loss,
            ce,
            aux: aux_sum / n_layers as f32,
            expert_share: shares,
            dropped_slots: dropped,
            label_tokens: m,
        })
    }

    /// Routed + shared experts over `x` `[n, d]`: output, aux loss, expert shares, drops.
    fn moe(
        &self,
        l: &Layer,
        x: &Tensor,
        real: &[bool],
        real_row: &Tensor,
    ) -> CResult<(Tensor, Tensor, Vec<f64>, u64)> {
        let cfg = &self.cfg;
        let (n, d) = x.dims2()?;
        let (e_n, k) = (cfg.n_experts, cfg.top_k);
        let probs = candle_nn::ops::softmax(&x.matmul(l.router.as_tensor())?, D::Minus1)?; // [n, E]
        let host = probs.to_vec2::<f32>()?;
        // Top-k per token on the host; ties go to the lower expert index.
        let mut choice = vec![0u32; n * k];
        let mut order: Vec<usize> = (0..e_n).collect();
        for (i, row) in host.iter().enumerate() {
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            for j in 0..k {
                choice[i * k + j] = order[j] as u32;
            }
        }
        let sel = Tensor::from_vec(choice.clone(), (n, k), &self.dev)?;
        let top = probs.gather(&sel, 1)?; // [n, k]
        let gates = top.broadcast_div(&top.sum_keepdim(1)?)?;

        // Dispatch lists: the (token, slot) pairs of each expert in token order.
        let cap = cfg
            .capacity_factor
            .map(|c| ((c * (n * k) as f64) / e_n as f64).ceil().max(1.0) as usize);
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); e_n];
        let mut routed = vec![0u64; e_n];
        let mut dest = vec![u32::MAX; n * k];
        let mut dropped = 0u64;
        for i in 0..n {
            for j in 0..k {
                let e = choice[i * k + j] as usize;
                if real[i] {
                    routed[e] += 1;
                }
                if cap.is_some_and(|c| lists[e].len() >= c) {
                    if real[i] {
                        dropped += 1;
                    }
                    continue;
                }
                lists[e].push((i * k + j) as u32);
            }
        }
        let mut outs = Vec::new();
        let mut base = 0u32;
        for (e, list) in lists.iter().enumerate() {
            if list.is_empty() {
                continue;
            }
            let toks: Vec<u32> = list.iter().map(|s| s / k as u32).collect();
            let toks = Tensor::from_vec(toks, list.len(), &self.dev)?;
            outs.push(swiglu(&x.index_select(&toks, 0)?, &l.experts[e])?);
            for (p, s) in list.iter().enumerate() {
                dest[*s as usize] = base + p as u32;
            }
            base += list.len() as u32;
        }
        outs.push(Tensor::zeros((1, d), DType::F32, &self.dev)?); // where dropped slots read
        let zero_row = base;
        for v in dest.iter_mut() {
            if *v == u32::MAX {
                *v = zero_row;
            }
        }
        let all = Tensor::cat(&outs, 0)?;
        let dest = Tensor::from_vec(dest, n * k, &self.dev)?;
        let per_slot = all.index_select(&dest, 0)?.reshape((n, k, d))?;
        let mut y = per_slot.broadcast_mul(&gates.unsqueeze(2)?)?.sum(1)?;
        for s in &l.shared {
            y = (y + swiglu(x, s)?)?;
        }

        // Load balance: E · Σ f_e P_e over real tokens (f is a constant, P carries the gradient).
        let total: u64 = routed.iter().sum();
        let share: Vec<f64> = routed
            .iter()
            .map(|&c| {
                if total == 0 {
                    0.0
                } else {
                    c as f64 / total as f64
                }
            })
            .collect();
        let f = Tensor::from_vec(
            share.iter().map(|&s| s as f32).collect::<Vec<_>>(),
            (e_n, 1),
            &self.dev,
        )?;
        let p_mean = real_row.matmul(&probs)?; // [1, E]
        let aux = (p_mean.matmul(&f)?.reshape(())? * e_n as f64)?;
        Ok((y, aux, share, dropped))
    }

    /// All parameters as named tensors (for a checkpoint).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.names
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Overwrite the parameters from named tensors (a checkpoint); every name must be present
    /// with the right shape.
    pub fn load_tensors(&self, t: &std::collections::HashMap<String, Tensor>) -> crate::Result<()> {
        for (name, var) in &self.names {
            let src = t
                .get(name)
                .ok_or_else(|| crate::Error::msg(format!("checkpoint has no tensor `{name}`")))?;
            if src.dims() != var.dims() {
                return Err(crate::Error::msg(format!(
                    "checkpoint tensor `{name}` has shape {:?}, the model wants {:?} (model config changed?)",
                    src.dims(),
                    var.dims()
                )));
            }
            var.set(src).map_err(cerr)?;
        }
        Ok(())
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.dev
    }
}

/// Rows of the LM head's logits computed at once by [`lm_head_ce`]: 128 × 151,936 logits
/// are 78 MB, so the working set stays a few such buffers whatever the batch.
pub const LM_HEAD_CHUNK: usize = 128;

/// Mean next-token cross-entropy of hidden states `hs` `[m, d]` against the tied output
/// embedding `w` `[V, d]` for `targets` (`m` ids below `V`), with exact gradients for both,
/// without materialising the `[m, V]` logits or their log-softmax.
///
/// The full-vocabulary softmax is most of a small model's step (Qwen2's 151,936 entries:
/// ~155 M logits for a 1,024-token batch). Through candle's autograd, `log_softmax` +
/// `gather` keeps the logits, their max-shifted copy, exp, log-softmax and the same again
/// in the backward pass: ~10 copies of `[m, V]`, which cost more in allocation and page
/// faults than the arithmetic. Here, per chunk of `chunk` rows (all detached from the graph):
/// `z = h·Wᵀ`, `e = exp(z − max z)`, `s = Σ e`, `lse = max + ln s`, and with `p = e / s`
/// the gradients of `ce = mean(lse − z_target)` are
/// `∂h = (p·W − W[target]) / m` and `∂W = (pᵀ·h − scatter(target, h)) / m`, the `1/s`
/// folded into the small `[c, d]` operands. One exp pass, three matmuls, one `[c, V]`
/// working set. The gradients ride back into candle's backward pass through a custom op
/// whose `bwd` scales them by the incoming gradient, so `loss.backward()` sees an ordinary
/// differentiable scalar. The gradients are computed eagerly (training always runs the
/// backward pass); `tests::fused_lm_head_matches_autograd` checks loss and both gradients
/// against `log_softmax` + `gather` through autograd.
pub fn lm_head_ce(
    hs: &Tensor,
    w: &Tensor,
    targets: &[u32],
    chunk: usize,
) -> CResult<(Tensor, f32)> {
    let (m, _) = hs.dims2()?;
    let dev = hs.device();
    let h = hs.detach().contiguous()?;
    let wd = w.detach();
    let wt = wd.t()?;
    let tg = Tensor::from_slice(targets, m, dev)?;
    let inv_m = 1.0 / m as f64;
    let mut loss = 0f64;
    let mut dhs = Vec::with_capacity(m.div_ceil(chunk.max(1)));
    let mut dw: Option<Tensor> = None;
    let mut r0 = 0;
    while r0 < m {
        let c = chunk.max(1).min(m - r0);
        let hc = h.narrow(0, r0, c)?;
        let wr = wd.index_select(&tg.narrow(0, r0, c)?, 0)?; // target rows [c, d]
        let z = hc.matmul(&wt)?; // [c, V]
        let mx = z.max_keepdim(1)?;
        let e = z.broadcast_sub(&mx)?.exp()?;
        drop(z);
        let s = e.sum_keepdim(1)?;
        let lse = (&mx + s.log()?)?;
        let zt = (&hc * &wr)?.sum_keepdim(1)?;
        loss += (lse - zt)?.sum_all()?.to_scalar::<f32>()? as f64;
        let inv = (s.recip()? * inv_m)?; // [c, 1]: 1 / (s · m)
        dhs.push((e.matmul(&wd)?.broadcast_mul(&inv)? - (wr * inv_m)?)?);
        let part = e.t()?.matmul(&hc.broadcast_mul(&inv)?)?; // [V, d]
        dw = Some(match dw {
            None => part,
            Some(d) => (d + part)?,
        });
        r0 += c;
    }
    let dw = match dw {
        Some(d) => d.index_add(&tg, &(&h * -inv_m)?, 0)?,
        None => wd.zeros_like()?,
    };
    let dh = if dhs.is_empty() {
        h.zeros_like()?
    } else {
        Tensor::cat(&dhs, 0)?
    };
    let ce = (loss * inv_m) as f32;
    let t = hs.apply_op2(w, FusedCe { ce, dh, dw })?;
    Ok((t, ce))
}

/// Carries [`lm_head_ce`]'s loss forward and its precomputed gradients backward.
struct FusedCe {
    ce: f32,
    dh: Tensor,
    dw: Tensor,
}

impl candle_core::CustomOp2 for FusedCe {
    fn name(&self) -> &'static str {
        "fused-lm-head-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> CResult<(candle_core::CpuStorage, candle_core::Shape)> {
        Ok((
            candle_core::CpuStorage::F32(vec![self.ce]),
            candle_core::Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_scalar::<f32>()? as f64;
        if g == 1.0 {
            return Ok((Some(self.dh.clone()), Some(self.dw.clone())));
        }
        Ok((Some((&self.dh * g)?), Some((&self.dw * g)?)))
    }
}

/// candle error → engine error.
pub fn cerr(e: candle_core::Error) -> crate::Error {
    crate::Error::msg(format!("candle: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_var(init: &mut Init, shape: (usize, usize), std: f64) -> Var {
        init.normal(shape, std).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// The fused LM-head loss equals `log_softmax` + `gather` through candle's autograd, in
    /// value and in both gradients, with uneven chunks, repeated targets and a downstream
    /// scale (the gradient arriving at the loss is not 1).
    #[test]
    fn fused_lm_head_matches_autograd() {
        let dev = Device::Cpu;
        let mut init = Init {
            rng: SplitMix64::new(7),
            dev: dev.clone(),
        };
        let (m, d, v) = (37, 16, 301);
        let hs = rand_var(&mut init, (m, d), 1.0);
        let w = rand_var(&mut init, (v, d), 0.5);
        let mut targets: Vec<u32> = (0..m as u32).map(|i| (i * 97 + 5) % v as u32).collect();
        targets[3] = targets[30]; // a repeated target: the scatter must accumulate
        let scale = 2.5;

        let logits = hs.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let tg = Tensor::from_vec(targets.clone(), (m, 1), &dev).unwrap();
        let reference =
            (lsm.gather(&tg, 1).unwrap().sum_all().unwrap() * (-1.0 / m as f64)).unwrap();
        let ref_loss = reference.to_scalar::<f32>().unwrap();
        let g_ref = (reference * scale).unwrap().backward().unwrap();

        for chunk in [1, 5, 16, 37, 64] {
            let (fused, ce) = lm_head_ce(hs.as_tensor(), w.as_tensor(), &targets, chunk).unwrap();
            assert!(
                (ce - ref_loss).abs() < 1e-5,
                "chunk {chunk}: {ce} vs {ref_loss}"
            );
            assert!((fused.to_scalar::<f32>().unwrap() - ref_loss).abs() < 1e-5);
            let g = (fused * scale).unwrap().backward().unwrap();
            for var in [&hs, &w] {
                let a = g.get(var.as_tensor()).expect("fused gradient");
                let b = g_ref.get(var.as_tensor()).expect("reference gradient");
                let diff = max_abs_diff(a, b);
                let size = b.abs().unwrap().max_keepdim(0).unwrap().max(1).unwrap();
                let size = size.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
                assert!(
                    diff <= 1e-5 * size.max(1e-3) * 10.0,
                    "chunk {chunk}: gradient differs by {diff} (scale {size})"
                );
            }
        }
    }
}
