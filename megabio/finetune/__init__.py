"""Fine-tuning: task models and heads, NER / RE / QA data and recipes on the training engine, metrics."""
