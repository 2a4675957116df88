//! AdamW with linear warmup and cosine decay, with saveable moments.
//!
//! Written here rather than using `candle_nn::AdamW` because an exact resume needs the
//! first and second moments and the step count in the checkpoint, and candle's optimizer
//! keeps them private. Decoupled weight decay (Loshchilov & Hutter) applies to matrices
//! only, not to the RMSNorm gains. Gradients are clipped to a global L2 norm first.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

/// Optimizer and schedule settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate. Default 0.003.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Steps of linear warmup from 0 to `lr`. Default 20.
    #[serde(default = "d_warmup")]
    pub warmup_steps: u64,
    /// Step at which the cosine decay reaches `min_lr_ratio · lr` (then stays). Default 1000.
    #[serde(default = "d_decay")]
    pub decay_steps: u64,
    /// Floor of the schedule as a fraction of `lr`. Default 0.1.
    #[serde(default = "d_min")]
    pub min_lr_ratio: f64,
    /// Decoupled weight decay on matrices. Default 0.1.
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Adam β1. Default 0.9.
    #[serde(default = "d_b1")]
    pub beta1: f64,
    /// Adam β2. Default 0.95.
    #[serde(default = "d_b2")]
    pub beta2: f64,
    /// Adam ε. Default 1e-8.
    #[serde(default = "d_eps")]
    pub eps: f64,
    /// Global gradient-norm clip (0 = off). Default 1.0.
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
}

fn d_lr() -> f64 {
    3e-3
}
fn d_warmup() -> u64 {
    20
}
fn d_decay() -> u64 {
    1000
}
fn d_min() -> f64 {
    0.1
}
fn d_wd() -> f64 {
    0.1
}
fn d_b1() -> f64 {
    0.9
}
fn d_b2() -> f64 {
    0.95
}
fn d_eps() -> f64 {
    1e-8
}
fn d_clip() -> f64 {
    1.0
}

impl OptimConfig {
    /// All problems at once.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            p.push("optim.lr must be positive".into());
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            p.push("optim.beta1 and optim.beta2 must be in [0, 1)".into());
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            p.push("optim.min_lr_ratio must be in [0, 1]".into());
        }
        if self.grad_clip < 0.0 || self.weight_decay < 0.0 {
            p.push("optim.grad_clip and optim.weight_decay must not be negative".into());
        }
        p
    }

    /// Learning rate at `step` (0-based): linear warmup, then cosine to the floor.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.decay_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let floor = self.lr * self.min_lr_ratio;
        floor + 0.5 * (self.lr - floor) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// AdamW over named variables.
pub struct AdamW {
    cfg: OptimConfig,
    slots: Vec<Slot>,
    t: u64,
}

impl AdamW {
    /// Zero moments for every variable.
    pub fn new(params: &[(String, Var)], cfg: OptimConfig) -> candle_core::Result<AdamW> {
        let mut slots = Vec::new();
        for (name, var) in params {
            slots.push(Slot {
                name: name.clone(),
                var: var.clone(),
                m: var.as_tensor().zeros_like()?,
                v: var.as_tensor().zeros_like()?,
                decay: var.rank() >= 2,
            });
        }
        Ok(AdamW { cfg, slots, t: 0 })
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.t
    }

    /// One update with learning rate `lr`. A variable without a gradient (an expert that
    /// got no token) is updated as if its gradient were zero.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> candle_core::Result<()> {
        let c = &self.cfg;
        let mut gs = Vec::with_capacity(self.slots.len());
        let mut sq = 0f64;
        for s in &self.slots {
            // Detached: candle's gradients record ops on the variables they came from, so
            // moments built from them would chain every step's graph (and its [V, d]
            // embedding gradients) into the next: memory grew ~40 MB per step.
            let g = match grads.get(s.var.as_tensor()) {
                Some(g) => g.detach(),
                None => s.var.as_tensor().zeros_like()?,
            };
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            gs.push(g);
        }
        let norm = sq.sqrt();
        let clip = if c.grad_clip > 0.0 && norm > c.grad_clip {
            c.grad_clip / norm
        } else {
            1.0
        };
        self.t += 1;
        let t = self.t as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for (s, g) in self.slots.iter_mut().zip(gs) {
            let g = (g * clip)?;
            s.m = ((&s.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            s.v = ((&s.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let mhat = (&s.m * (1.0 / bc1))?;
            let denom = ((&s.v * (1.0 / bc2))?.sqrt()? + c.eps)?;
            let w = s.var.as_tensor().detach();
            let w = if s.decay {
                (w * (1.0 - lr * c.weight_decay))?
            } else {
                w
            };
            let upd = (mhat / denom)?;
            s.var.set(&(w - (upd * lr)?)?)?;
        }
        Ok(())
    }

    /// Moments as named tensors (`opt.m.<param>`, `opt.v.<param>`).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for s in &self.slots {
            out.push((format!("opt.m.{}", s.name), s.m.clone()));
            out.push((format!("opt.v.{}", s.name), s.v.clone()));
        }
        out
    }

    /// Restore moments and the step count from a checkpoint.
    pub fn load_tensors(
        &mut self,
        t: &std::collections::HashMap<String, Tensor>,
        step: u64,
    ) -> crate::Result<()> {
        for s in &mut self.slots {
            for (kind, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                let key = format!("opt.{kind}.{}", s.name);
                let src = t.get(&key).ok_or_else(|| {
                    crate::Error::msg(format!("checkpoint has no optimizer tensor `{key}`"))
                })?;
                if src.dims() != dst.dims() {
                    return Err(crate::Error::msg(format!(
                        "checkpoint tensor `{key}` has the wrong shape"
                    )));
                }
                *dst = src.clone();
            }
        }
        self.t = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_floor() {
        let c: OptimConfig =
            serde_json::from_str(r#"{"lr": 1.0, "warmup_steps": 10, "decay_steps": 110}"#).unwrap();
        assert!((c.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(60) - 0.55).abs() < 1e-9);
        assert!((c.lr_at(110) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(5000) - 0.1).abs() < 1e-12);
    }
}
