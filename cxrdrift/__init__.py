"""cxrdrift: semantic drift of CAM explanations between transfer learning and fine-tuning."""
