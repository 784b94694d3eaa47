// pm2 ecosystem for Subnet 20 (BitAgent): a validator and a miner, configured through BITAGENT_* variables.
//
//   pm2 start ecosystem.config.js --only bitagent-validator     (or --only bitagent-miner)
//   pm2 start ecosystem.config.js --only bitagent-validator-autoupdate   (the validator, kept updated: docs/staging.md)
//   pm2 logs bitagent-validator
//
// Edit the env blocks (wallet names, model, GPUs) or override them in the shell: pm2 passes its own
// environment through. Every variable is also a command-line option: `bitagent validate --help`.
// Stopping sends SIGTERM: the validator stops its model server and exits within kill_timeout; whatever it
// was doing resumes from its SQLite state on the next start (it is also safe against kill -9).
module.exports = {
  apps: [
    {
      name: "bitagent-validator",
      script: ".venv/bin/bitagent",
      args: "validate",
      interpreter: "none",
      cwd: __dirname,
      autorestart: true,
      restart_delay: 10000,
      kill_timeout: 60000,
      env: {
        BITAGENT_NETUID: "20",
        BITAGENT_SUBTENSOR_NETWORK: "finney",
        BITAGENT_WALLET_NAME: "validator",
        BITAGENT_WALLET_HOTKEY: "default",
        BITAGENT_BACKEND: "sglang",
        // sglang in its own virtual environment (it pins its own torch)
        BITAGENT_SERVER_PYTHON: "/opt/sglang-venv/bin/python",
        BITAGENT_VISIBLE_DEVICES: "0",
        BITAGENT_MEM_FRACTION_STATIC: "0.85",
        BITAGENT_HF_CACHE_DIR: "/var/lib/bitagent/hf-cache",
        BITAGENT_STATE_PATH: "/var/lib/bitagent/validator/state.sqlite",
        // BITAGENT_DRY_RUN: "1",         // everything but submitting weights
        // BITAGENT_WANDB: "1",           // pip install 'bitagent[wandb]' and set WANDB_API_KEY
        // HF_TOKEN: "hf_...",            // only for higher Hub rate limits; submissions are public repos
      },
    },
    {
      // The validator run by `bitagent update --auto-update` from the release directory: new releases are
      // installed beside the current one, checked, switched to between evaluations, and rolled back if they
      // crash. Releases come only from the source you name, pinned by hash: set the two variables below, then
      // install the first release once: `bitagent update --root /var/lib/bitagent/releases` (same variables).
      name: "bitagent-validator-autoupdate",
      script: "/var/lib/bitagent/releases/current/bin/bitagent",
      args: "update --root /var/lib/bitagent/releases --auto-update -- validate",
      interpreter: "none",
      autorestart: true,
      restart_delay: 10000,
      kill_timeout: 180000,
      env: {
        BITAGENT_NETUID: "20",
        BITAGENT_SUBTENSOR_NETWORK: "finney",
        BITAGENT_WALLET_NAME: "validator",
        BITAGENT_WALLET_HOTKEY: "default",
        BITAGENT_BACKEND: "sglang",
        BITAGENT_SERVER_PYTHON: "/opt/sglang-venv/bin/python",
        BITAGENT_VISIBLE_DEVICES: "0",
        BITAGENT_HF_CACHE_DIR: "/var/lib/bitagent/hf-cache",
        BITAGENT_STATE_PATH: "/var/lib/bitagent/validator/state.sqlite",
        BITAGENT_UPDATE_INTERVAL_MINUTES: "60",
        BITAGENT_UPDATE_PROBATION_MINUTES: "10",
        BITAGENT_UPDATE_FIND_LINKS: "/var/lib/bitagent/wheels",
        BITAGENT_UPDATE_HASH_FILE: "/etc/bitagent/release.sha256",
      },
    },
    {
      name: "bitagent-miner",
      script: ".venv/bin/bitagent",
      args: "mine",
      interpreter: "none",
      cwd: __dirname,
      autorestart: true,
      restart_delay: 10000,
      kill_timeout: 15000,
      env: {
        BITAGENT_NETUID: "20",
        BITAGENT_SUBTENSOR_NETWORK: "finney",
        BITAGENT_WALLET_NAME: "miner",
        BITAGENT_WALLET_HOTKEY: "default",
        // org/name@<commit sha>: validators evaluate exactly that commit
        BITAGENT_HF_MODEL_NAME: "your-org/your-model@0123456789abcdef0123456789abcdef01234567",
        BITAGENT_AXON_IP: "0.0.0.0",
        BITAGENT_AXON_PORT: "8091",
        BITAGENT_EXTERNAL_IP: "203.0.113.10",
      },
    },
  ],
};
