"""``ript serve``: a policy behind openpi's websocket protocol (docs/serving.md).

- :mod:`.wire`: openpi's msgpack encoding of numpy arrays;
- :mod:`.inputs`: an observation dict -> the :class:`~ript_core.policy_input.PolicyInput`
  the rollout runner would hand the policy, with errors that name the key;
- :mod:`.batcher`: one inference thread that batches concurrent requests;
- :mod:`.server`: the websocket server (metadata, infer, errors, ``/healthz``).
"""
