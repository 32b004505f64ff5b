"""What tests share: fake servers and recorded fixtures (fixtures), micro models on real tokenizers
(real_models), a tiny PairRM (tiny_pairrm), the command-line helpers (cli) and micro configs (micro)."""
