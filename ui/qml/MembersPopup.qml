// Who is in the open room, and who is online.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Layouts 1.15
import "."

Popup {
    id: popup
    anchors.centerIn: Overlay.overlay
    width: 320
    height: Math.min(480, list.contentHeight + 80)
    modal: true
    padding: 16
    background: Rectangle { color: "white"; radius: 10 }

    ColumnLayout {
        anchors.fill: parent
        Label {
            text: qsTr("Members (%1)").arg(list.count)
            font.bold: true
            font.pixelSize: 16
        }
        ListView {
            id: list
            Layout.fillWidth: true
            Layout.fillHeight: true
            clip: true
            model: bridge.members
            delegate: RowLayout {
                required property string userId
                required property string name
                required property bool online
                required property string avatarSource
                required property bool isMe
                width: ListView.view.width
                height: 52
                spacing: 10
                Avatar { size: 40; source: avatarSource; label: name }
                Column {
                    Layout.fillWidth: true
                    Text { text: isMe ? qsTr("%1 (me)").arg(name) : name; font.pixelSize: 14; color: Theme.ink }
                    Text { text: userId; font.pixelSize: 11; color: Theme.subtle }
                }
                Rectangle {
                    width: 8; height: 8; radius: 4
                    color: online ? Theme.online : Theme.faint
                }
            }
        }
    }
}
