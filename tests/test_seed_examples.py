"""Every code example of the incumbent framework's batch guide (shared/seed/module_batch.txt),
run against streambatch with only ``tcex.batch('MyOrg')`` replaced by ``Batch('MyOrg', path)``.

The produced batch dicts are checked field by field against the facts sheet
(shared/spec/tc-batch-api.md sections 4 and 6.2).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from streambatch import Batch, Group, Indicator, generate_xid

CANONICAL_DATE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture
def batch(tmp_path):
    b = Batch("MyOrg", tmp_path / "job.sqlite")
    yield b
    b.close()


def _yesterday_midnights() -> set[str]:
    """'yesterday' as canonical UTC midnight, for today's date (and the date a moment later, so a
    test that runs across midnight does not flake)."""
    out = set()
    for now in (datetime.now(timezone.utc), datetime.now(timezone.utc) + timedelta(seconds=5)):
        day = (now - timedelta(days=1)).date()
        out.add(f"{day.isoformat()}T00:00:00Z")
    return out


# -- Groups, interface 1 ----------------------------------------------------------------------


def test_group_interface1_adversary_all_fields(batch):
    adversary = batch.adversary('adversary-001', xid='my-xid-000')
    adversary.attribute('Description', 'Example Description', True)
    adversary.tag('Example Tag')
    adversary.security_label('TLP Green')

    assert isinstance(adversary, Group)
    assert adversary.xid == 'my-xid-000'
    assert adversary.type == 'Adversary'
    assert adversary.data == {
        'type': 'Adversary',
        'name': 'adversary-001',
        'xid': 'my-xid-000',
        'attribute': [{'type': 'Description', 'value': 'Example Description', 'displayed': True}],
        'tag': [{'name': 'Example Tag'}],
        'securityLabel': [{'name': 'TLP Green'}],
    }
    expected = adversary.data

    # optional save method
    batch.save(adversary)
    assert batch.group_len == 1
    assert batch.indicator_len == 0
    assert len(batch) == 1
    assert batch.get('my-xid-000').data == expected


def test_group_interface1_document_with_property_setters(batch):
    document = batch.document('document-001', 'example.txt')
    document.malware = True
    document.password = 'test'
    document.file_content = 'example file content'

    # Add Attribute
    attr = document.attribute('Description', 'Example Description')
    assert 'displayed' not in attr.data  # tcex leaves displayed out unless it is true
    attr.displayed = True

    # Add Tag
    document.tag('Example Tag')

    # Add Label
    label = document.security_label('My Label')
    assert label.data == {'name': 'My Label'}
    label.color = 'ffffff'
    label.description = 'Security label description.'

    data = document.data
    assert data['type'] == 'Document'
    assert data['name'] == 'document-001'
    assert data['fileName'] == 'example.txt'
    assert data['malware'] is True
    assert data['password'] == 'test'
    # no xid given: the default is deterministic (owner + type + name), 32 hex characters
    assert data['xid'] == document.xid
    assert len(document.xid) == 32 and int(document.xid, 16) >= 0
    assert data['attribute'] == [{'type': 'Description', 'value': 'Example Description', 'displayed': True}]
    assert data['tag'] == [{'name': 'Example Tag'}]
    assert data['securityLabel'] == [
        {'name': 'My Label', 'color': 'ffffff', 'description': 'Security label description.'}]
    # file content is never part of the batch JSON, but the record keeps it
    assert 'fileContent' not in data
    assert 'file_content' not in data
    assert document.file_content == 'example file content'
    assert set(data) == {'type', 'name', 'xid', 'fileName', 'malware', 'password', 'attribute', 'tag',
                         'securityLabel'}

    # optional save method
    batch.save(document)
    batch.flush()
    stored = batch.job.get_group(document.xid)
    assert stored == data
    assert 'fileContent' not in stored
    assert batch.job.file(document.xid)['content'] == b'example file content'


# -- Groups, interface 2 ----------------------------------------------------------------------


def test_group_interface2_event_with_add_key_value(batch):
    event = batch.group('Event', 'My event name', date_added='2008-12-12T12:12:12', xid='my-xid-0001')
    event.add_key_value('eventDate', 'yesterday')
    event.add_key_value('status', 'Needs Review')
    event.attribute('Description', 'Example Description 2', True, 'source')
    event.tag('Example Tag')

    data = event.data
    assert data['type'] == 'Event'
    assert data['name'] == 'My event name'
    assert data['xid'] == 'my-xid-0001'
    assert data['dateAdded'] == '2008-12-12T12:12:12Z'  # naive means UTC
    assert re.fullmatch(CANONICAL_DATE, data['eventDate'])
    assert data['eventDate'] in _yesterday_midnights()
    assert data['status'] == 'Needs Review'
    assert data['attribute'] == [{'type': 'Description', 'value': 'Example Description 2', 'displayed': True,
                                  'source': 'source'}]
    assert data['tag'] == [{'name': 'Example Tag'}]
    assert set(data) == {'type', 'name', 'xid', 'dateAdded', 'eventDate', 'status', 'attribute', 'tag'}
    # the property view of the same fields
    assert event.status == 'Needs Review'
    assert event.event_date == data['eventDate']


def test_group_interface2_document_with_add_file(batch):
    document = batch.group('Document', 'document-001', xid='my-xid-0001')
    document.add_file('test.txt', 'Document content here...')
    document.add_key_value('fileName', 'test.txt')
    document.attribute('Description', 'Example Description', True, 'Attribute source')
    document.tag('Example Tag')
    document.security_label('TLP Green')

    assert document.data == {
        'type': 'Document',
        'name': 'document-001',
        'xid': 'my-xid-0001',
        'fileName': 'test.txt',
        'attribute': [{'type': 'Description', 'value': 'Example Description', 'displayed': True,
                       'source': 'Attribute source'}],
        'tag': [{'name': 'Example Tag'}],
        'securityLabel': [{'name': 'TLP Green'}],
    }
    assert document.file_content == 'Document content here...'
    assert document.file_name == 'test.txt'


# -- Groups, interface 3 ----------------------------------------------------------------------


def test_group_interface3_raw_document_dict(batch):
    xid = batch.generate_xid(['my', 'adversary', '123'])
    assert xid == generate_xid(['my', 'adversary', '123'])
    doc = batch.add_group({
        'name': 'document-002',
        'fileName': 'test2.txt',
        'fileContent': 'example content 2',
        'type': 'Document',
        'xid': xid,
        "associatedGroupXid": [
            "my-xid-001"
        ],
        'attribute': [{
            "displayed": True,
            "type": "Description",
            "value": "Example Description"
        }],
        'tag': [{
            'name': 'SafeToDelete'
        }]
    })

    assert isinstance(doc, Group)
    assert doc.xid == xid
    assert doc.data == {
        'type': 'Document',
        'name': 'document-002',
        'xid': xid,
        'fileName': 'test2.txt',
        'associatedGroupXid': ['my-xid-001'],
        'attribute': [{'type': 'Description', 'value': 'Example Description', 'displayed': True}],
        'tag': [{'name': 'SafeToDelete'}],
    }
    assert doc.file_content == 'example content 2'
    assert batch.group_len == 1


# -- Indicators, interface 1 ------------------------------------------------------------------


def test_indicator_interface1_address(batch):
    address = batch.address('123.124.125.126', rating='5.0', confidence='100')
    address.attribute('Description', 'Example Description', True)
    address.tag('Example Tag')
    address.security_label('TLP Green')
    address.association('the_xid_of_pre_existing_group')

    assert isinstance(address, Indicator)
    data = address.data
    assert data['type'] == 'Address'
    assert data['summary'] == '123.124.125.126'
    assert data['rating'] == 5.0 and type(data['rating']) is float
    assert data['confidence'] == 100 and type(data['confidence']) is int
    assert data['attribute'] == [{'type': 'Description', 'value': 'Example Description', 'displayed': True}]
    assert data['tag'] == [{'name': 'Example Tag'}]
    assert data['securityLabel'] == [{'name': 'TLP Green'}]
    assert data['associatedGroups'] == [{'groupXid': 'the_xid_of_pre_existing_group'}]
    assert 'associatedGroupXid' not in data
    assert data['xid'] == address.xid and len(address.xid) == 32
    assert set(data) == {'type', 'summary', 'xid', 'rating', 'confidence', 'attribute', 'tag',
                         'securityLabel', 'associatedGroups'}


def test_indicator_interface1_file_with_property_setters(batch):
    file_hash = batch.file('43c3609411c83f363e051d455ade78a6')
    file_hash.rating = 5.0
    file_hash.confidence = 100

    # Add Attribute
    attr = file_hash.attribute('Description', 'Example Description')
    attr.displayed = True

    # Tag
    file_hash.tag('Example Tag')

    # Add Label
    label = file_hash.security_label('My Label')
    label.color = 'ffffff'
    label.description = 'Security label description.'

    # Add Occurrence
    occurrence = file_hash.occurrence()
    occurrence.file_name = 'drop1.exe'
    occurrence.path = 'C:\\test\\'
    occurrence.date = '2017-02-02 01:02:03'

    # Add Association
    pre_existing_group_xid = 'the_xid_of_pre_existing_group'
    file_hash.association(pre_existing_group_xid)

    data = file_hash.data
    assert data['type'] == 'File'
    assert data['summary'] == '43c3609411c83f363e051d455ade78a6'
    assert data['rating'] == 5.0
    assert data['confidence'] == 100
    assert data['attribute'] == [{'type': 'Description', 'value': 'Example Description', 'displayed': True}]
    assert data['tag'] == [{'name': 'Example Tag'}]
    assert data['securityLabel'] == [
        {'name': 'My Label', 'color': 'ffffff', 'description': 'Security label description.'}]
    assert data['fileOccurrence'] == [{'fileName': 'drop1.exe', 'path': 'C:\\test\\',
                                       'date': '2017-02-02T01:02:03Z'}]
    assert data['associatedGroups'] == [{'groupXid': 'the_xid_of_pre_existing_group'}]
    assert occurrence.date == '2017-02-02T01:02:03Z'
    assert set(data) == {'type', 'summary', 'xid', 'rating', 'confidence', 'attribute', 'tag',
                         'securityLabel', 'fileOccurrence', 'associatedGroups'}


# -- Indicators, interface 2 ------------------------------------------------------------------


def test_indicator_interface2_host(batch):
    host = batch.indicator('Host', 'www.badguys2.com', rating='5.0', confidence='100')
    host.add_key_value('dnsActive', True)
    host.add_key_value('whoisActive', True)
    host.attribute('Description', 'Example Description 2', True, 'source')
    host.tag('Example Tag')

    # Add association
    pre_existing_group_xid = 'the_xid_of_pre_existing_group'
    host.association(pre_existing_group_xid)

    data = host.data
    assert data['type'] == 'Host'
    assert data['summary'] == 'www.badguys2.com'
    assert data['rating'] == 5.0 and type(data['rating']) is float
    assert data['confidence'] == 100 and type(data['confidence']) is int
    # dnsActive / whoisActive travel as flag1 / flag2
    assert data['flag1'] is True
    assert data['flag2'] is True
    assert 'dnsActive' not in data and 'whoisActive' not in data
    assert data['attribute'] == [{'type': 'Description', 'value': 'Example Description 2', 'displayed': True,
                                  'source': 'source'}]
    assert data['tag'] == [{'name': 'Example Tag'}]
    assert data['associatedGroups'] == [{'groupXid': 'the_xid_of_pre_existing_group'}]
    assert host.dns_active is True and host.whois_active is True


# -- Indicators, interface 3 ------------------------------------------------------------------


def test_indicator_interface3_raw_file_dict(batch):
    rec = batch.add_indicator({
        "type": "File",
        "rating": 5.00,
        "confidence": 50,
        "summary": "53c3609411c83f363e051d455ade78a7 : 57a49b478310e4313c54c0fee46e4d70a73dd580 : db31cb2a748b7e0046d8c97a32a7eb4efde32a0593e5dbd58e07a3b4ae6bf3d7",
        "associatedGroups": [
            {
                "groupXid": "e336e2dd-5dfb-48cd-a33a-f8809e83e904"
            }
        ],
        "attribute": [{
            "type": "Source",
            "displayed": True,
            "value": "Malware Analysis provided by external AMA."
        }],
        "fileOccurrence": [{
            "fileName": "drop1.exe",
            "date": "2017-03-03T18:00:00-06:00"
        }],
        "tag": [{
            "name": "China"
        }],
        "xid": "e336e2dd-5dfb-48cd-a33a-f8809e83e904:170139"
    })

    assert rec.data == {
        'type': 'File',
        'summary': '53c3609411c83f363e051d455ade78a7 : 57a49b478310e4313c54c0fee46e4d70a73dd580 : '
                   'db31cb2a748b7e0046d8c97a32a7eb4efde32a0593e5dbd58e07a3b4ae6bf3d7',
        'xid': 'e336e2dd-5dfb-48cd-a33a-f8809e83e904:170139',
        'rating': 5.0,
        'confidence': 50,
        'associatedGroups': [{'groupXid': 'e336e2dd-5dfb-48cd-a33a-f8809e83e904'}],
        'attribute': [{'type': 'Source', 'value': 'Malware Analysis provided by external AMA.', 'displayed': True}],
        # -06:00 converted to UTC
        'fileOccurrence': [{'fileName': 'drop1.exe', 'date': '2017-03-04T00:00:00Z'}],
        'tag': [{'name': 'China'}],
    }
    assert batch.indicator_len == 1


# -- File Occurrence ----------------------------------------------------------------------------


def test_file_occurrence_positional_form(batch):
    file_hash = batch.file('43c3609411c83f363e051d455ade78a6')
    occ = file_hash.occurrence('drop1.exe', 'C:\\test\\', '2017-02-02 01:02:03')
    assert occ.data == {'fileName': 'drop1.exe', 'path': 'C:\\test\\', 'date': '2017-02-02T01:02:03Z'}
    assert file_hash.data['fileOccurrence'] == [occ.data]


def test_file_occurrence_property_form(batch):
    file_hash = batch.file('43c3609411c83f363e051d455ade78a6')
    occurrence = file_hash.occurrence()
    occurrence.file_name = 'drop1.exe'
    occurrence.path = 'C:\\test\\'
    occurrence.date = '2017-02-02 01:02:03'
    assert file_hash.data['fileOccurrence'] == [
        {'fileName': 'drop1.exe', 'path': 'C:\\test\\', 'date': '2017-02-02T01:02:03Z'}]


def test_file_occurrence_both_forms_give_the_same_entry_once(batch):
    file_hash = batch.file('43c3609411c83f363e051d455ade78a6')
    file_hash.occurrence('drop1.exe', 'C:\\test\\', '2017-02-02 01:02:03')
    occurrence = file_hash.occurrence()
    occurrence.file_name = 'drop1.exe'
    occurrence.path = 'C:\\test\\'
    occurrence.date = '2017-02-02 01:02:03'
    assert batch.file('43c3609411c83f363e051d455ade78a6') is file_hash
    assert file_hash.data['fileOccurrence'] == [
        {'fileName': 'drop1.exe', 'path': 'C:\\test\\', 'date': '2017-02-02T01:02:03Z'}]


# -- Associations (interface 3 shapes) ----------------------------------------------------------


def test_association_group_to_group_dict(batch):
    rec = batch.add_group({
        "name": "document-002",
        "type": "Document",
        "xid": "my-xid-002",
        "associatedGroupXid": [
            "my-xid-001"
        ]
    })
    assert rec.data == {'type': 'Document', 'name': 'document-002', 'xid': 'my-xid-002',
                        'associatedGroupXid': ['my-xid-001']}
    assert rec.associated_group_xids == ['my-xid-001']


def test_association_indicator_to_group_dict(batch):
    rec = batch.add_indicator({
        "associatedGroups": [{
            "groupXid": "my-xid-001"
        }],
        "summary": "HKEY_LOCAL_MACHINE\\system : TRUE : REG_DWORD",
        "type": "Registry Key",
        "xid": "ba60d2d6-8049-4080-9c5c-2b33d8d97767"
    })
    assert rec.data == {'type': 'Registry Key', 'summary': 'HKEY_LOCAL_MACHINE\\system : TRUE : REG_DWORD',
                        'xid': 'ba60d2d6-8049-4080-9c5c-2b33d8d97767',
                        'associatedGroups': [{'groupXid': 'my-xid-001'}]}
    assert rec.associated_group_xids == ['my-xid-001']


def test_association_interface1_group_to_group(batch):
    """Interface 1/2 associations behave the same for groups: associatedGroupXid strings."""
    adversary = batch.adversary('adversary-001', xid='my-xid-000')
    adversary.association('my-xid-001')
    adversary.association('my-xid-001')  # kept once
    assert adversary.data['associatedGroupXid'] == ['my-xid-001']
    assert 'associatedGroups' not in adversary.data


# -- The seed's examples together, and the tcex shim --------------------------------------------


def test_seed_examples_in_one_batch_count_records(batch):
    batch.adversary('adversary-001', xid='my-xid-000')
    batch.document('document-001', 'example.txt')
    batch.group('Event', 'My event name', xid='my-xid-0001')
    batch.add_group({'name': 'document-002', 'type': 'Document', 'xid': 'my-xid-002'})
    batch.address('123.124.125.126')
    file_hash = batch.file('43c3609411c83f363e051d455ade78a6')
    batch.indicator('Host', 'www.badguys2.com')
    batch.add_indicator({"summary": "HKEY_LOCAL_MACHINE\\system : TRUE : REG_DWORD", "type": "Registry Key",
                         "xid": "ba60d2d6-8049-4080-9c5c-2b33d8d97767"})
    # asking again for the same indicator (any hash case) is the same object
    assert batch.file('43C3609411C83F363E051D455ADE78A6') is file_hash
    assert batch.indicator('host', 'WWW.BADGUYS2.COM') is batch.host('www.badguys2.com')
    assert batch.group_len == 4
    assert batch.indicator_len == 4
    assert len(batch) == 8


def test_tcex_shim_runs_the_guide_unchanged(tmp_path, monkeypatch):
    from streambatch import tcex

    monkeypatch.chdir(tmp_path)
    batch = tcex.batch('MyOrg')
    try:
        assert isinstance(batch, Batch)
        assert batch.owner == 'MyOrg'
        # the framework factory's defaults
        assert batch.settings.halt_on_error is False
        assert batch.settings.action == 'Create'
        assert batch.settings.attribute_write_type == 'Replace'
        # the job file lands under ./.streambatch/
        assert batch.path.resolve().parent == (tmp_path / '.streambatch').resolve()
        assert batch.path.resolve().exists()

        adversary = batch.adversary('adversary-001', xid='my-xid-000')
        adversary.attribute('Description', 'Example Description', True)
        adversary.tag('Example Tag')
        adversary.security_label('TLP Green')
        batch.save(adversary)

        host = batch.indicator('Host', 'www.badguys2.com', rating='5.0', confidence='100')
        host.add_key_value('dnsActive', True)
        host.add_key_value('whoisActive', True)
        host.association('my-xid-000')

        assert batch.get('my-xid-000').data == {
            'type': 'Adversary', 'name': 'adversary-001', 'xid': 'my-xid-000',
            'attribute': [{'type': 'Description', 'value': 'Example Description', 'displayed': True}],
            'tag': [{'name': 'Example Tag'}], 'securityLabel': [{'name': 'TLP Green'}]}
        assert host.data['flag1'] is True and host.data['flag2'] is True
        assert host.data['associatedGroups'] == [{'groupXid': 'my-xid-000'}]
        assert len(batch) == 2
    finally:
        batch.close()


def test_tcex_shim_exit(capsys):
    from streambatch import tcex

    with pytest.raises(SystemExit) as info:
        tcex.exit(1, 'Errors during Batch: []')
    assert info.value.code == 1
    assert 'Errors during Batch' in capsys.readouterr().err
