"""Beam glue: one module per stage of the graph in DESIGN.md, thin over contracts/ and privacy/.

    from transforms.event_batches import Unbatch, SingleBatches               # events travel as batches
    from transforms.read_input import ReadBatchInput
    from transforms.validate import ValidateEvents
    from transforms.encrypt import EncryptPii
    from transforms.privacy_streams import PrivacyStreams
    from transforms.write_jsonl import WriteJsonlBatches
    from transforms.stream_sources import ReadPubSubEvents, ReadKafkaEvents   # streaming sources
    from transforms.lateness import AdmitInTime                               # streaming: the late-data decision
    from transforms.windowed_export import WriteWindowedJsonl, WriteProcessingTimeJsonl  # streaming writers
"""
